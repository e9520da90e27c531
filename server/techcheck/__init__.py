"""The patient's technology check before a first group: the guided page (/techcheck), the
echo test through the real SFU (/ws/techcheck), the kept results (no PHI) and the staff
badge, and scheduling a clinician's 10-minute technology test session."""
