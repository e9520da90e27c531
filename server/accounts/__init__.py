"""Who someone is and what they may do: staff sign-in with a second factor, sessions
and the idle lock, the role table, caseload scope, and patients' join links."""
