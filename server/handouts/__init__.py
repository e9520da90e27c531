"""Psychoeducation handouts: the program library, versions, attachments, reading pages.

Owns the handout tables' storage (store.py) and pages (pages.py); the room reads a
session's handouts through `store.shelf_for_session`. The rules are in care/handouts.py.
"""
