"""Admin pages: programs, staff accounts, patients' intake records and groups."""
