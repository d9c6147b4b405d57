"""Full-mesh peering as a pure state machine (Garage: src/net/peering.rs).

Every node tries to hold one connection to every node it knows of. This module decides
*what* to do; the driver (:mod:`garage_rpc.peering`) does it and reports back. No I/O, no
clock: the driver passes ``now`` (monotonic seconds) to every call.

State of a known peer:

- ``OURSELF``: this node (never connected to, always "up").
- ``CONNECTED``: a live connection; pinged every ``ping_interval_s``. Each ping's round
  trip goes into a window of the last ``PING_WINDOW`` samples, whose mean orders quorum
  calls. More than ``max_failed_pings`` consecutive failures → the driver disconnects.
- ``WAITING(retries, at)``: not connected; at time ``at`` the driver tries each known
  address in turn (state ``TRYING``). A failure → ``WAITING(retries + 1, now +
  retry_interval_s)``; after ``max_retries`` failures → ``ABANDONED``.
- ``ABANDONED``: given up until someone tells us an address for it again (a peer list, an
  announcement, an operator's ``node connect``), which resets it to ``WAITING(0, now)``.

Peer lists spread the mesh: each ping carries a digest of the sender's set of up peers;
when the answer's digest differs, the nodes exchange peer lists and each adds the peers it
did not know. A peer's address is learned from the peer's own announcement (the address it
says it listens on), which replaces what others told us.
"""

from __future__ import annotations

import enum
import hashlib
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, final

from garage_util.data import FixedBytes32

if TYPE_CHECKING:
    from collections.abc import Iterable


__all__ = [
    "PING_WINDOW",
    "Connect",
    "Disconnect",
    "PeerAddr",
    "PeerInfo",
    "PeerState",
    "PeeringConfig",
    "PeeringCore",
    "Ping",
]

#: Round trips kept per peer for the moving average (Garage keeps the last 10).
PING_WINDOW: Final = 10

PeerAddr = tuple[str, int]


@dataclass(frozen=True, slots=True)
class PeeringConfig:
    """Timings of the peering loop. Garage's values are the defaults; tests shorten them.

    Attributes:
        ping_interval_s: how often a connected peer is pinged (Garage: 15 s).
        ping_timeout_s: a ping not answered in this time failed (``rpc_ping_timeout_msec``).
        max_failed_pings: consecutive failures tolerated; one more disconnects (Garage: 4).
        retry_interval_s: wait between connection attempts to a down peer (Garage: 30 s).
        max_retries: failed attempts before a peer is abandoned (Garage: 10).
        loop_interval_s: how often the driver calls :meth:`PeeringCore.tick` (Garage: 1 s).
    """

    ping_interval_s: float = 15.0
    ping_timeout_s: float = 10.0
    max_failed_pings: int = 4
    retry_interval_s: float = 30.0
    max_retries: int = 10
    loop_interval_s: float = 1.0


class PeerState(enum.Enum):
    """Where a known peer stands (see the module docstring)."""

    OURSELF = "ourself"
    CONNECTED = "connected"
    WAITING = "waiting"
    TRYING = "trying"
    ABANDONED = "abandoned"


@dataclass(slots=True)
class PeerInfo:
    """What this node knows of one peer (mutable: owned by :class:`PeeringCore`)."""

    node_id: FixedBytes32
    addrs: list[PeerAddr] = field(default_factory=list)
    state: PeerState = PeerState.WAITING
    retries: int = 0
    retry_at: float = 0.0
    connected_addr: PeerAddr | None = None
    last_seen: float | None = None
    last_ping_sent: float | None = None
    pings: deque[float] = field(default_factory=lambda: deque(maxlen=PING_WINDOW))
    failed_pings: int = 0

    @property
    def is_up(self) -> bool:
        """True for ourself and for connected peers."""
        return self.state in (PeerState.OURSELF, PeerState.CONNECTED)

    @property
    def avg_ping_s(self) -> float | None:
        """Mean of the recent round trips, or None before the first ping answer."""
        return sum(self.pings) / len(self.pings) if self.pings else None


@dataclass(frozen=True, slots=True)
class Ping:
    """Action: ping this connected peer."""

    node_id: FixedBytes32


@dataclass(frozen=True, slots=True)
class Connect:
    """Action: try to connect to this peer, at these addresses in turn."""

    node_id: FixedBytes32
    addrs: tuple[PeerAddr, ...]


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Action: drop the connection to this peer (it failed too many pings)."""

    node_id: FixedBytes32


Action = Ping | Connect | Disconnect


@final
class PeeringCore:
    """The peer table and its rules; the driver turns its actions into network calls.

    Args:
        our_id: this node's id.
        config: the timings.
    """

    __slots__ = ("_config", "_our_id", "_peers")

    def __init__(self, our_id: FixedBytes32, config: PeeringConfig = PeeringConfig()) -> None:
        self._our_id = our_id
        self._config = config
        self._peers: dict[FixedBytes32, PeerInfo] = {
            our_id: PeerInfo(our_id, state=PeerState.OURSELF)
        }

    @property
    def config(self) -> PeeringConfig:
        """The timings in force."""
        return self._config

    def peers(self) -> list[PeerInfo]:
        """Every known peer (ourself included), by node id."""
        return [self._peers[k] for k in sorted(self._peers)]

    def get(self, node_id: FixedBytes32) -> PeerInfo | None:
        """What is known of ``node_id``, if anything."""
        return self._peers.get(node_id)

    def up_peers(self) -> list[FixedBytes32]:
        """Ourself and the connected peers, by node id."""
        return sorted(k for k, p in self._peers.items() if p.is_up)

    def peer_list_digest(self) -> bytes:
        """SHA-512 of the sorted ids of the up peers: equal on nodes that see the same mesh."""
        return hashlib.sha512(b"".join(self.up_peers())).digest()

    def peer_list(self) -> list[tuple[FixedBytes32, PeerAddr]]:
        """``(id, address)`` of the connected peers, to send to a peer whose digest differs."""
        out = []
        for node_id, p in sorted(self._peers.items()):
            addr = p.connected_addr or (p.addrs[0] if p.addrs else None)
            if p.state is PeerState.CONNECTED and addr is not None:
                out.append((node_id, addr))
        return out

    # ------------------------------------------------------------------ learning peers

    def learn(self, node_id: FixedBytes32, addr: PeerAddr, now: float) -> None:
        """Someone told us ``node_id`` listens at ``addr`` (bootstrap list, peer list).

        An unknown peer becomes ``WAITING(0, now)``; so does a waiting or abandoned peer
        that we learn a new address for.
        """
        if node_id == self._our_id:
            return
        peer = self._peers.get(node_id)
        if peer is None:
            self._peers[node_id] = PeerInfo(node_id, addrs=[addr], retry_at=now)
            return
        if addr in peer.addrs:
            return
        peer.addrs.append(addr)
        if peer.state in (PeerState.WAITING, PeerState.ABANDONED):
            peer.state, peer.retries, peer.retry_at = PeerState.WAITING, 0, now

    def learn_many(self, peers: Iterable[tuple[FixedBytes32, PeerAddr]], now: float) -> None:
        """:meth:`learn` for each pair of a peer list."""
        for node_id, addr in peers:
            self.learn(node_id, addr, now)

    def announced(self, node_id: FixedBytes32, addr: PeerAddr) -> None:
        """``node_id`` itself says it listens at ``addr``: that address goes first."""
        peer = self._peers.get(node_id)
        if peer is None or node_id == self._our_id:
            return
        if addr in peer.addrs:
            peer.addrs.remove(addr)
        peer.addrs.insert(0, addr)

    # ------------------------------------------------------------------ the loop

    def tick(self, now: float) -> list[Action]:
        """What to do now: ping peers due for it, and try peers whose retry time came."""
        actions: list[Action] = []
        for node_id, peer in sorted(self._peers.items()):
            if peer.state is PeerState.CONNECTED:
                sent = peer.last_ping_sent
                if sent is None or now - sent >= self._config.ping_interval_s:
                    peer.last_ping_sent = now
                    actions.append(Ping(node_id))
            elif peer.state is PeerState.WAITING and now >= peer.retry_at and peer.addrs:
                peer.state = PeerState.TRYING
                actions.append(Connect(node_id, tuple(peer.addrs)))
        return actions

    # ------------------------------------------------------------------ reports

    def connected(self, node_id: FixedBytes32, addr: PeerAddr | None, now: float) -> None:
        """A connection to ``node_id`` is up (ours, or one it opened to us)."""
        if node_id == self._our_id:
            return
        peer = self._peers.setdefault(node_id, PeerInfo(node_id))
        peer.state, peer.retries = PeerState.CONNECTED, 0
        peer.connected_addr = addr
        peer.last_seen = now
        peer.failed_pings = 0
        peer.last_ping_sent = None
        if addr is not None and addr not in peer.addrs:
            peer.addrs.append(addr)

    def connect_failed(self, node_id: FixedBytes32, now: float) -> None:
        """Every address of ``node_id`` failed: wait and retry, or give up."""
        peer = self._peers.get(node_id)
        if peer is None or peer.state not in (PeerState.TRYING, PeerState.WAITING):
            return  # ourself, or connected meanwhile (e.g. the peer dialled us)
        peer.retries += 1
        if peer.retries >= self._config.max_retries:
            peer.state = PeerState.ABANDONED
        else:
            peer.state = PeerState.WAITING
            peer.retry_at = now + self._config.retry_interval_s

    def disconnected(self, node_id: FixedBytes32, now: float) -> None:
        """The connection to ``node_id`` is gone: try again after the retry interval."""
        peer = self._peers.get(node_id)
        if peer is None or peer.state is not PeerState.CONNECTED:
            return
        peer.state, peer.retries = PeerState.WAITING, 0
        peer.retry_at = now + self._config.retry_interval_s
        peer.connected_addr = None

    def ping_ok(self, node_id: FixedBytes32, rtt_s: float, now: float) -> None:
        """A ping answered after ``rtt_s`` seconds."""
        peer = self._peers.get(node_id)
        if peer is None:
            return
        peer.pings.append(rtt_s)
        peer.failed_pings = 0
        peer.last_seen = now

    def ping_failed(self, node_id: FixedBytes32) -> list[Action]:
        """A ping failed or timed out; returns a Disconnect when there were too many."""
        peer = self._peers.get(node_id)
        if peer is None or peer.state is not PeerState.CONNECTED:
            return []
        peer.failed_pings += 1
        if peer.failed_pings > self._config.max_failed_pings:
            return [Disconnect(node_id)]
        return []
