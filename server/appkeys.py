"""Typed keys for everything the application holds."""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from crisis.notify import EventStream
from rooms.registry import RoomRegistry
from server.clock import Clock
from server.config import Settings
from server.phi import Keyring

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
KEYRING = web.AppKey("keyring", Keyring)
CLOCK = web.AppKey("clock", Clock)
BACKGROUND = web.AppKey("background", set[asyncio.Task[None]])
ROOMS = web.AppKey("rooms", RoomRegistry)
SOCKETS = web.AppKey("sockets", set[web.WebSocketResponse])
# In-process listeners (the supervisor dashboard) subscribe here to crisis notifications.
CRISIS_STREAM = web.AppKey("crisis_stream", EventStream)
# (The live rooms' journal key, ROOM_JOURNAL, lives in server/roomsocket/journal.py.)
