"""The real client address: X-Forwarded-For is believed only as far as our proxies wrote it."""

from __future__ import annotations

import ipaddress

import pytest

from server.client_address import resolve

PROXIES = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"))


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # No proxy is trusted: the header is the client's own claim.
        ("198.51.100.1", ["203.0.113.9"], "198.51.100.1"),
        # One trusted proxy: the entry it appended is the client.
        ("127.0.0.1", ["203.0.113.9"], "203.0.113.9"),
        # A client that sends its own header only adds entries on the left.
        ("127.0.0.1", ["1.2.3.4, 203.0.113.9"], "203.0.113.9"),
        ("127.0.0.1", ["1.2.3.4", "203.0.113.9"], "203.0.113.9"),
        # Two trusted hops (a load balancer, then nginx) are skipped.
        ("127.0.0.1", ["1.2.3.4, 203.0.113.9, 10.1.2.3"], "203.0.113.9"),
        # A trusted proxy that sent no header is the client as far as we can tell.
        ("127.0.0.1", [], "127.0.0.1"),
        # Garbage written by our own proxy: stop at the last hop we can vouch for.
        ("127.0.0.1", ["203.0.113.9, not-an-address"], "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.9, 10.1.2.3, unknown"], "127.0.0.1"),
        # Every hop trusted (a client inside the proxy network).
        ("127.0.0.1", ["10.4.4.4"], "10.4.4.4"),
        # One client, one key, whatever the socket family.
        ("::ffff:198.51.100.1", [], "198.51.100.1"),
        ("127.0.0.1", ["::FFFF:203.0.113.9"], "203.0.113.9"),
        ("127.0.0.1", ["2001:DB8::1"], "2001:db8::1"),
        (None, ["203.0.113.9"], "unknown"),
    ],
)
def test_the_client_is_the_first_untrusted_hop_from_the_right(
    peer: str | None, headers: list[str], expected: str
) -> None:
    assert resolve(peer, headers, PROXIES) == expected
