"""What the room engine needs from the rest of the server, and what it offers media hooks."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from coach.contracts import SessionEvents
from coach.tasks import TaskOwner
from server.admission import Admission
from server.metrics import Metrics
from server.settings import Settings
from server.store.base import Store

ConnRef = tuple[str, str]  # (process id holding the WebSocket, connection id)
PcmSink = Callable[[np.ndarray, int], None]  # (mono int16, perf_counter_ns at receipt)


class Outbox(Protocol):
    """How the engine talks back to connections, wherever they live (server/outbox.py)."""

    def send(self, conn: ConnRef, msg: dict[str, Any]) -> None: ...

    def drop(self, conn: ConnRef, code: int, reason: str) -> None: ...


class MediaHandle(Protocol):
    async def close(self) -> None: ...


class WhisperTap:
    """The mentor's push-to-talk whisper for the media hook (the shadow recording's right channel):
    16 kHz mono int16 chunks stamped at receipt, only while whisper is on (server/rooms/shadow.py
    feeds it). One sink; ``connect(None)`` detaches."""

    RATE = 16_000

    def __init__(self) -> None:
        self._sink: PcmSink | None = None

    def connect(self, sink: PcmSink | None) -> None:
        self._sink = sink

    @property
    def wanted(self) -> bool:
        """Someone listens (else the whisper is not decoded for it)."""
        return self._sink is not None

    def feed(self, pcm: np.ndarray, t_ns: int) -> None:
        if self._sink is not None:
            self._sink(pcm, t_ns)


@dataclass
class MediaContext:
    """What a media hook gets for the primary's peer connection (before the answer is made).

    ``remote_tracks`` are relay subscriptions (buffered) of the primary's inbound tracks: read
    them freely; the raw tracks are also feeding the mentor. Add outbound tracks with
    ``pc.addTrack`` (the offer's transceivers are reused). ``whisper`` hands the mentor's whisper
    to whoever connects to it (audio only reaches it while whisper is on).
    """

    room_id: str
    session_id: str
    user: str
    role: str
    lang: str
    scenario: str | None
    pc: RTCPeerConnection
    remote_tracks: list[MediaStreamTrack]
    events: SessionEvents  # the Room
    store: Store
    settings: Settings
    whisper: WhisperTap = field(default_factory=WhisperTap)


class MediaHooks(Protocol):
    def attach(self, ctx: MediaContext) -> MediaHandle | None | Awaitable[MediaHandle | None]: ...

    @property
    def live_sessions(self) -> int:
        """Media sessions attached and not yet closed (health: what is really alive)."""
        ...

    async def close(self) -> None:
        """Shutdown, after the rooms: stop what outlives sessions (e.g. muxing recordings)."""
        ...


class NoMediaHooks:
    """Default: no agent; the primary's media only feeds the mentor."""

    def attach(self, ctx: MediaContext) -> None:
        return None

    @property
    def live_sessions(self) -> int:
        return 0

    async def close(self) -> None:
        return None


IDLE_COLLECT_S = 1.0  # after the last peer closed: its own teardown finishes first


class PeerCount:
    """Live peer connections on this process (the session cap and the ``peers`` gauge).

    aiortc's peer objects sit in reference cycles, and each closed one keeps its libav codec
    thread pools until a full collection, which an idle process may not run for a long time
    (soak: 34-108 idle native threads with no session; one ``gc.collect()`` brought 96 to 10).
    When the last peer has closed there is no live media to stall: collect once then."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.value = 0
        self._collect: asyncio.TimerHandle | None = None

    def opened(self) -> None:
        self.value += 1
        self.metrics.peers.set(self.value)

    def closed(self) -> None:
        self.value -= 1
        self.metrics.peers.set(self.value)
        if self.value == 0:
            if self._collect is not None:
                self._collect.cancel()
            self._collect = asyncio.get_running_loop().call_later(IDLE_COLLECT_S, self._collect_if_idle)

    def _collect_if_idle(self) -> None:
        self._collect = None
        if self.value == 0:
            gc.collect()


@dataclass
class RoomServices:
    """Shared by every room of a manager: built once, passed down, never reached back into."""

    settings: Settings
    process_id: str  # written into session records: recovery knows whose sessions are orphaned
    store: Store
    metrics: Metrics
    hooks: MediaHooks
    outbox: Outbox
    peers: PeerCount
    tasks: TaskOwner  # manager-level tasks (a lost peer's removal outlives the peer's own tasks)
    peer_lost: Callable[[ConnRef, str], Coroutine[Any, Any, None]]
    admission: Admission  # may a new media session start now (session cap, loop lag, CPU)?
