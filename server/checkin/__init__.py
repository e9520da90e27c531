"""The pre-session check-in: where the patient is, the screeners one question per screen,
and the concerns they raise."""
