"""Care between sessions: what patients do from their standing link, as plain domain rules."""
