"""The local emergency directory: storage, admin pages, CSV import and export."""
