"""The pages a clinician works from: home, a group, a patient's record and join links."""
