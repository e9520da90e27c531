"""The daily mood check (care/mood.py) on the server: the patient's page, the storage of
entries and of each program's reminder setting, the review task a very low day raises, the
trends and the "since last session" line staff see, and the daily reminder worker."""
