"""Screening, crisis events and escalation: domain code with no web or storage imports."""
