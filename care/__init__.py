"""Care between sessions (domain): plain Python, no web, media or storage imports."""
