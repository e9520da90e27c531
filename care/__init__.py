"""Care between and around sessions (domain): no web, media or storage imports."""
