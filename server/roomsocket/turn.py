"""Short-lived TURN credentials: the TURN REST API shared-secret scheme (coturn's
`use-auth-secret`): username = "<expiry unix time>:<user>", password =
base64(HMAC-SHA1(secret, username)). The user part is an opaque per-connection id, never a
name, because TURN servers log usernames.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any


def credentials(secret: str, now: float, ttl_s: int) -> tuple[str, str]:
    """A username and password that coturn accepts until now + ttl_s."""
    username = f"{int(now) + ttl_s}:{secrets.token_hex(8)}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(
    urls: tuple[str, ...], secret: str | None, now: float, ttl_s: int
) -> list[dict[str, Any]]:
    """The RTCIceServer list a browser needs; empty when no TURN server is configured."""
    if not urls or secret is None:
        return []
    username, password = credentials(secret, now, ttl_s)
    return [{"urls": list(urls), "username": username, "credential": password}]
