"""The cluster in Redis: live nodes, the room -> node leases, and messages between nodes.

The model is LiveKit's multi-node mode: a room lives on exactly one node, which holds
its lease (`SET key node NX PX lease`) and renews it while the room lives; a node that
dies stops renewing, its leases run out and the next node asked for the room takes it.
Every node announces itself with a key that expires unless refreshed (the heartbeat).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.config import Settings
from server.logs import get_logger

log = get_logger(__name__)

# Compare-and-extend / compare-and-delete: a node never extends or frees a lease that has
# passed to another node in the meantime.
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
DRAIN_SAFE = "safe"
DRAIN_NOW = "now"
# Long enough for any session to reach a phase change; a node clears it when it starts.
DRAIN_TTL_S = 24 * 3600
CLAIM_POLL_S = 0.2


class ClusterBusy(Exception):
    """The room's lease is held by a node that stopped answering and has not expired yet."""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One live node as it announces itself."""

    id: str
    url: str
    state: str  # "serving" or "draining"
    rooms: int


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a room is served: here, or on another node."""

    node: NodeInfo | None  # None: this node

    @property
    def local(self) -> bool:
        """True when this node serves the room."""
        return self.node is None


HERE = Placement(None)


class Cluster:
    """This node's membership of the cluster: heartbeat, leases, drain flag, pub/sub."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.node_id = settings.node_id
        self.node_url = settings.node_url
        self.lease_ms = int(settings.lease_s * 1000)
        self.rooms_per_node = settings.rooms_per_node
        self._prefix = settings.redis_prefix
        self._redis = redis
        self._held: dict[str, float] = {}  # room id -> when it was claimed (monotonic)
        self._moving: set[str] = set()
        self.draining: str | None = None
        self._extend = redis.register_script(_EXTEND)
        self._release = redis.register_script(_RELEASE)
        self._heartbeat: asyncio.Task[None] | None = None
        # Set by the server: is the room still live here; drain begins; a lease was lost.
        self.keep: Callable[[str, float], bool] = lambda _room, _claimed: False
        self.on_drain: Callable[[str], None] = lambda _mode: None
        self.on_lost: Callable[[str], None] = lambda _room: None

    # Keys ---------------------------------------------------------------------------------

    def _node_key(self, node_id: str) -> str:
        return f"{self._prefix}node:{node_id}"

    def _room_key(self, room_id: str) -> str:
        return f"{self._prefix}room:{room_id}"

    def _rooms_key(self, node_id: str) -> str:
        return f"{self._prefix}rooms:{node_id}"

    def _drain_key(self, node_id: str) -> str:
        return f"{self._prefix}drain:{node_id}"

    def _channel(self, name: str) -> str:
        return bus_channel(self._prefix, name)

    # Life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Announce this node and keep announcing it every third of a lease."""
        # A drain flag left from this id's previous run does not apply to the new process.
        await self._redis.delete(self._drain_key(self.node_id))
        await self._announce()
        self._heartbeat = asyncio.create_task(self._beat(), name="cluster-heartbeat")
        log.info("cluster.joined", node_id=self.node_id, lease_ms=self.lease_ms)

    async def close(self) -> None:
        """Stop the heartbeat, free every lease and leave the cluster (idempotent)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        with contextlib.suppress(RedisError, OSError):
            for room_id in list(self._held):
                await self.release(room_id)
            await self._redis.delete(self._node_key(self.node_id), self._rooms_key(self.node_id))
            log.info("cluster.left", node_id=self.node_id)

    async def _announce(self) -> None:
        state = "draining" if self.draining else "serving"
        body = {
            "id": self.node_id,
            "url": self.node_url,
            "state": state,
            "rooms": len(self._held),
            "at": time.time(),
        }
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self._node_key(self.node_id), json.dumps(body), px=self.lease_ms)
            pipe.pexpire(self._rooms_key(self.node_id), self.lease_ms)
            await pipe.execute()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                await self._tick()
            except (RedisError, OSError) as exc:
                # Leases run on Redis's clock: if it stays away past a lease, renewals
                # fail afterwards and the rooms go wherever the next client lands.
                log.warning("cluster.heartbeat_failed", error_type=type(exc).__name__)

    async def _tick(self) -> None:
        await self._renew()
        await self._announce()
        mode = await self._redis.get(self._drain_key(self.node_id))
        if mode is not None:
            mode = mode.decode() if isinstance(mode, bytes) else str(mode)
            if self.draining != mode:
                self.draining = mode
                log.info("cluster.draining", node_id=self.node_id, mode=mode)
                await self._announce()
            self.on_drain(mode)

    async def _renew(self) -> None:
        for room_id, claimed in list(self._held.items()):
            if room_id in self._moving:
                continue
            if not self.keep(room_id, claimed):
                await self.release(room_id)
                continue
            extended = await self._extend(
                keys=[self._room_key(room_id)], args=[self.node_id, self.lease_ms]
            )
            if not extended and room_id in self._held:
                self._held.pop(room_id, None)
                await self._redis.srem(self._rooms_key(self.node_id), room_id)
                log.warning("cluster.lease_lost", room_id=room_id, node_id=self.node_id)
                self.on_lost(room_id)

    # Leases -------------------------------------------------------------------------------

    def held_rooms(self) -> list[str]:
        """The rooms whose lease this node holds."""
        return list(self._held)

    def holds(self, room_id: str) -> bool:
        """True while this node holds the room's lease."""
        return room_id in self._held

    async def claim(
        self, room_id: str, unreachable: str | None = None, *, placed: bool = False
    ) -> Placement:
        """Take or confirm the room's lease, or say which live node holds it.

        `unreachable` names a node the client could not reach: it is never the answer, and
        its lease is waited out as a dead node's is. A room nobody holds is taken here
        unless this node is at its `rooms_per_node` limit and another serving node has
        room; `placed` (a node already sent the client here) takes it regardless, so a
        client is never sent on twice.
        """
        deadline = time.monotonic() + self.lease_ms / 1000 + 1.0
        while True:
            holder = await self._redis.get(self._room_key(room_id))
            holder_id = holder.decode() if isinstance(holder, bytes) else holder
            if holder_id == self.node_id and room_id in self._held and room_id not in self._moving:
                return HERE
            if self.draining or room_id in self._moving:
                other = await self.pick_other()
                if other is not None and holder_id in (None, self.node_id):
                    return Placement(other)
            if holder_id is None and not placed:
                roomier = await self._roomier_node(unreachable)
                if roomier is not None:
                    return Placement(roomier)
            if holder_id is None:
                taken = await self._redis.set(
                    self._room_key(room_id), self.node_id, nx=True, px=self.lease_ms
                )
            elif holder_id == self.node_id:
                # Ours in Redis but not in this process: a restart under the same node id.
                taken = await self._extend(
                    keys=[self._room_key(room_id)], args=[self.node_id, self.lease_ms]
                )
            else:
                taken = False
            if taken:
                self._held[room_id] = time.monotonic()
                await self._redis.sadd(self._rooms_key(self.node_id), room_id)
                log.info("cluster.room_taken", room_id=room_id, node_id=self.node_id)
                return HERE
            if holder_id in (None, self.node_id):
                continue
            node = await self.node(holder_id) if holder_id != unreachable else None
            if node is not None:
                return Placement(node)
            # The holder stopped announcing itself, or cannot be reached: its lease runs out
            # within one period unless it is still alive.
            if time.monotonic() > deadline:
                raise ClusterBusy(room_id)
            await asyncio.sleep(CLAIM_POLL_S)

    async def release(self, room_id: str) -> None:
        """Free the room's lease if this node still holds it."""
        self._held.pop(room_id, None)
        await self._release(keys=[self._room_key(room_id)], args=[self.node_id])
        await self._redis.srem(self._rooms_key(self.node_id), room_id)
        log.info("cluster.room_released", room_id=room_id, node_id=self.node_id)

    @contextlib.asynccontextmanager
    async def moving(self, room_id: str) -> AsyncIterator[None]:
        """While a room moves away, this node sends its clients elsewhere instead of taking it."""
        self._moving.add(room_id)
        try:
            yield
        finally:
            self._moving.discard(room_id)

    # Nodes --------------------------------------------------------------------------------

    async def node(self, node_id: str) -> NodeInfo | None:
        """A live node by id, or None when it stopped announcing itself."""
        raw = await self._redis.get(self._node_key(node_id))
        if raw is None:
            return None
        # A node that missed two heartbeats is treated as gone, so clients are not sent
        # to a dead node for the rest of its key's life (they get "try again" instead).
        beat = json.loads(raw).get("at")
        if isinstance(beat, (int, float)) and time.time() - beat > 2 * self.lease_ms / 3000:
            return None
        return _node_info(raw)

    async def nodes(self) -> list[NodeInfo]:
        """Every live node."""
        return await live_nodes(self._redis, self._prefix)

    async def _roomier_node(self, unreachable: str | None) -> NodeInfo | None:
        """At the room limit: the serving node with the fewest rooms, if it is under it.

        With every node full the room is taken here anyway (logged): a group is never
        turned away for capacity; the limit spreads rooms, it does not refuse them.
        """
        if not self.rooms_per_node or len(self._held) < self.rooms_per_node:
            return None
        other = await self.pick_other(besides=unreachable)
        if other is not None and other.rooms < self.rooms_per_node:
            return other
        log.warning("cluster.over_capacity", node_id=self.node_id, rooms=len(self._held))
        return None

    async def pick_other(self, besides: str | None = None) -> NodeInfo | None:
        """The serving node (not this one, nor `besides`) with the fewest rooms, or None."""
        others = [
            n
            for n in await self.nodes()
            if n.id not in (self.node_id, besides) and n.state == "serving"
        ]
        return min(others, key=lambda n: (n.rooms, n.id)) if others else None

    # Shared views (each node's own expiring key) -------------------------------------------

    async def share(self, name: str, value: dict[str, Any]) -> None:
        """Publish this node's `name` view; it expires with the node's lease."""
        key = f"{self._prefix}{name}:{self.node_id}"
        await self._redis.set(key, json.dumps(value), px=self.lease_ms)

    async def shared(self, name: str) -> dict[str, dict[str, Any]]:
        """Every live node's `name` view, by node id."""
        found: dict[str, dict[str, Any]] = {}
        pattern = f"{self._prefix}{name}:*"
        async for key in self._redis.scan_iter(match=pattern, count=100):
            raw = await self._redis.get(key)
            if raw is None:
                continue
            name_key = key.decode() if isinstance(key, bytes) else str(key)
            body = json.loads(raw)
            if isinstance(body, dict):
                found[name_key.rsplit(":", 1)[1]] = body
        return found

    # Messages between nodes (the seam for cross-node fan-out) -----------------------------

    async def publish(self, channel: str, message: dict[str, Any]) -> int:
        """Send a JSON message to every node subscribed to `channel`; how many got it."""
        return int(await self._redis.publish(self._channel(channel), json.dumps(message)))

    async def subscribe(self, channel: str) -> AsyncIterator[dict[str, Any]]:
        """Messages published on `channel` from now on, until the iterator is closed."""
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self._channel(channel))
        try:
            async for item in pubsub.listen():
                if item.get("type") == "message":
                    yield json.loads(item["data"])
        finally:
            await pubsub.unsubscribe()
            await pubsub.aclose()


def bus_channel(prefix: str, name: str) -> str:
    """The Redis channel a message between nodes travels on."""
    return f"{prefix}bus:{name}"


def _node_info(raw: bytes | str) -> NodeInfo:
    body = json.loads(raw)
    return NodeInfo(str(body["id"]), str(body["url"]), str(body["state"]), int(body["rooms"]))


async def live_nodes(redis: Redis, prefix: str) -> list[NodeInfo]:
    """Every node whose heartbeat has not expired."""
    found = []
    async for key in redis.scan_iter(match=f"{prefix}node:*", count=100):
        raw = await redis.get(key)
        if raw is not None:
            found.append(_node_info(raw))
    return sorted(found, key=lambda n: n.id)


async def rooms_of(redis: Redis, prefix: str, node_id: str) -> set[str]:
    """The rooms a node holds right now."""
    members = await redis.smembers(f"{prefix}rooms:{node_id}")
    return {m.decode() if isinstance(m, bytes) else str(m) for m in members}


async def request_drain(redis: Redis, prefix: str, node_id: str, mode: str) -> None:
    """Mark a node draining; it acts on it within a third of a lease."""
    await redis.set(f"{prefix}drain:{node_id}", mode, ex=DRAIN_TTL_S)
