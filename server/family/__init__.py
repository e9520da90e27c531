"""Family sessions: the support person's release, link, identity check, consent and room."""
