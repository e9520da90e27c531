"""The crisis path in storage and on screen: events and their hash-chained timeline,
deadlines and the outbox, on-call roster, safety data and break-glass, drop and silence
triggers, the event page and the crisis API."""
