"""The on-call supervisor's dashboard: its page, WebSocket messages and what it shows."""
