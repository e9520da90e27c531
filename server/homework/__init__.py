"""Homework between sessions: assignments from the program library or a free-text task,
the patient's drafts and hand-in, staff review, and the completion badge staff see."""
