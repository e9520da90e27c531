"""Attendance pages: one session's figures, attestation and CSV, and the weekly roll-up."""
