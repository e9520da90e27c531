"""Rooms and sessions: the domain of who meets when, with no web or storage imports."""
