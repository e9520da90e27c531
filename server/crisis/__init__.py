"""The crisis path in storage and on screen: events and their hash-chained timeline,
deadlines and the outbox, where escalated concerns are written, on-call roster, safety data
and break-glass, drop and silence triggers, the event page and the crisis API."""
