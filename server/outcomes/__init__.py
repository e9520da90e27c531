"""Outcome tracking and discharge: the program's measurement-based-care view, the versioned
aftercare plan (staff edit it; the patient opens and downloads it), and the patient's own
read-only view of their current safety plan. The domain is in care/."""
