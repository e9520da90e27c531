"""Programs, staff, patients, groups, appointments and session instances: storage,
validated input and the JSON API."""
