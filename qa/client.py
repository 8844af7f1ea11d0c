"""Python client of the livecoach WebSocket protocol + an aiortc peer (tests, bench, QA).

    client = LivecoachClient()
    joined = await client.connect("http://127.0.0.1:8080", token)
    await client.publish(audio=ToneTrack(440), recv_audio=True)
    frame = await client.received_audio.recv()
    msg = await client.wait_for("session_ended", timeout=5)
    await client.close()

Every server message is kept (bounded) with ``_recv_ns`` = perf_counter_ns at arrival, put on
``events`` and matched by ``wait_for``. Call ``close()`` (or use ``async with``) to free the peer.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import time
from typing import Any, Callable

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from media.peer import close_quietly, create_peer_connection
from media.settings import MediaSettings

HISTORY = 10_000
Predicate = Callable[[dict[str, Any]], bool]


class ClientError(RuntimeError):
    def __init__(self, reason: str, message: str = "", msg: dict[str, Any] | None = None):
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message
        self.msg = msg or {}


def _direction(send: bool, recv: bool) -> str | None:
    if send and recv:
        return "sendrecv"
    if send:
        return "sendonly"
    if recv:
        return "recvonly"
    return None


class LivecoachClient:
    def __init__(self, media: MediaSettings | None = None, name: str = "client") -> None:
        self.media = media or MediaSettings(ice_loopback_only=True)
        self.name = name
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(HISTORY)
        self.joined: dict[str, Any] | None = None
        self.pc: RTCPeerConnection | None = None
        self.received_audio: MediaStreamTrack | None = None
        self.received_video: MediaStreamTrack | None = None
        self.connect_ms: float | None = None  # publish(): offer → connected
        self._history: collections.deque[dict[str, Any]] = collections.deque(maxlen=HISTORY)
        self._consumed: set[int] = set()  # id() of messages already returned by wait_for
        self._arrived = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._connected = asyncio.Event()
        self._failed = asyncio.Event()
        self.close_code: int | None = None

    async def __aenter__(self) -> "LivecoachClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- websocket ------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._ws is None or self._ws.closed

    async def open(self, base_url: str, timeout: float = 10.0) -> None:
        """Open the WebSocket only (``connect`` also joins). Raises ClientError('server_busy') on 503."""
        url = base_url.rstrip("/")
        if url.startswith("http"):
            url = "ws" + url[4:]
        self._session = aiohttp.ClientSession()
        try:
            self._ws = await self._session.ws_connect(url + "/ws", timeout=aiohttp.ClientWSTimeout(ws_close=timeout),
                                                      max_msg_size=4 * 1024 * 1024)
        except aiohttp.WSServerHandshakeError as exc:
            await self._session.close()
            self._session = None
            reason = "server_busy" if exc.status == 503 else f"http_{exc.status}"
            raise ClientError(reason, str(exc)) from None
        self._reader = asyncio.create_task(self._read(), name=f"{self.name}-reader")

    async def connect(self, base_url: str, token: str, scenario: str | None = None, lang: str | None = None,
                      room: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """Open the socket and join; returns the ``joined`` message or raises ClientError(reason)."""
        await self.open(base_url, timeout)
        msg: dict[str, Any] = {"type": "join", "token": token}
        if scenario is not None:
            msg["scenario"] = scenario
        if lang is not None:
            msg["lang"] = lang
        if room is not None:
            msg["room"] = room
        self.joined = await self.request(msg, "joined", timeout=timeout)
        return self.joined

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                if raw.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    msg = json.loads(raw.data)
                except ValueError:
                    continue
                msg["_recv_ns"] = time.perf_counter_ns()
                self._history.append(msg)
                if self.events.full():  # keep the newest: drop the oldest unread
                    self.events.get_nowait()
                self.events.put_nowait(msg)
                self._arrived.set()
        finally:
            self.close_code = self._ws.close_code
            self._arrived.set()

    async def send(self, msg: dict[str, Any]) -> None:
        if self._ws is None or self._ws.closed:
            raise ClientError("closed", "websocket is closed")
        await self._ws.send_str(json.dumps(msg))

    async def send_raw(self, text: str) -> None:
        """Send a text frame as-is (tests of malformed input)."""
        if self._ws is None or self._ws.closed:
            raise ClientError("closed", "websocket is closed")
        await self._ws.send_str(text)

    async def request(self, msg: dict[str, Any], reply_type: str, timeout: float = 10.0) -> dict[str, Any]:
        """Send ``msg`` with a fresh id; wait for ``reply_type`` with that ref, or raise its error."""
        ref = msg.get("id") or f"{self.name}-{next(self._ids)}"
        msg = {**msg, "id": ref}
        await self.send(msg)
        reply = await self.wait_for(
            lambda m: m.get("ref") == ref and m.get("type") in (reply_type, "error"), timeout=timeout
        )
        if reply["type"] == "error":
            raise ClientError(reply.get("reason", "error"), reply.get("message", ""), reply)
        return reply

    async def wait_for(self, type_: str | Predicate, predicate: Predicate | None = None,
                       timeout: float = 10.0) -> dict[str, Any]:
        """First message (received before or after the call) of ``type_`` matching ``predicate``
        not returned by an earlier wait_for. ``type_`` may itself be a predicate."""
        if callable(type_):
            match: Predicate = type_
        else:
            match = lambda m: m.get("type") == type_ and (predicate is None or predicate(m))  # noqa: E731
        deadline = time.monotonic() + timeout
        while True:
            for msg in list(self._history):
                if id(msg) not in self._consumed and match(msg):
                    self._consumed.add(id(msg))
                    return msg
            if self._reader is None or self._reader.done():
                raise ClientError("closed", f"socket closed (code {self.close_code}) while waiting for {type_}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [m.get("type") for m in list(self._history)[-8:]]
                raise asyncio.TimeoutError(f"{self.name}: no {type_} within {timeout} s (last: {seen})")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def messages(self, type_: str | None = None) -> list[dict[str, Any]]:
        """Everything received so far (optionally of one type), oldest first."""
        return [m for m in list(self._history) if type_ is None or m.get("type") == type_]

    # ---- media ----------------------------------------------------------------------------------
    async def publish(self, audio: MediaStreamTrack | None = None, video: MediaStreamTrack | None = None,
                      recv_audio: bool = True, recv_video: bool = False, timeout: float = 10.0,
                      prepare: Callable[[RTCPeerConnection], None] | None = None) -> dict[str, Any]:
        """Offer/answer with the server and wait until the peer is connected; returns the answer.

        ``prepare(pc)`` runs once the transceivers exist, before the offer (e.g. qa/rtp_tap.py)."""
        if self.pc is not None:
            raise ClientError("invalid_state", "already published")
        pc = create_peer_connection(self.media)
        self.pc = pc
        audio_dir, video_dir = _direction(audio is not None, recv_audio), _direction(video is not None, recv_video)
        if audio_dir is None and video_dir is None:
            raise ClientError("invalid_field", "nothing to send or receive")
        if audio_dir is not None:
            pc.addTransceiver(audio if audio is not None else "audio", direction=audio_dir)
        if video_dir is not None:
            pc.addTransceiver(video if video is not None else "video", direction=video_dir)
        if prepare is not None:
            prepare(pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self.received_audio = track
            else:
                self.received_video = track

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected":
                self._connected.set()
            elif pc.connectionState in ("failed", "closed"):
                self._failed.set()

        start = time.perf_counter_ns()
        await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers every candidate here
        answer = await self.request({"type": "offer", "sdp": pc.localDescription.sdp}, "answer", timeout)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        connected = asyncio.ensure_future(self._connected.wait())
        failed = asyncio.ensure_future(self._failed.wait())
        done, _ = await asyncio.wait({connected, failed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        connected.cancel()
        failed.cancel()
        if not self._connected.is_set():
            raise ClientError("not_connected", f"peer state {pc.connectionState} after {timeout} s")
        self.connect_ms = (time.perf_counter_ns() - start) / 1e6
        return answer

    # ---- room features --------------------------------------------------------------------------
    async def tip(self, text: str, timeout: float = 5.0) -> str:
        """Mentor: send a tip; returns its tip_id."""
        return (await self.request({"type": "tip", "text": text}, "tip_sent", timeout))["tip_id"]

    async def ack(self, tip_id: str) -> None:
        """Streamer: acknowledge a tip (with when it arrived here, for one-way latency)."""
        msg: dict[str, Any] = {"type": "tip_ack", "tip_id": tip_id}
        tip = next((m for m in self.messages("tip") if m.get("tip_id") == tip_id), None)
        if tip is not None:
            msg["received_ns"] = tip["_recv_ns"]
        await self.send(msg)

    async def whisper(self, on: bool, timeout: float = 5.0) -> dict[str, Any]:
        return await self.request({"type": "whisper", "on": on}, "whisper", timeout)

    async def ping(self, timeout: float = 5.0) -> float:
        """Round trip in ms."""
        t0 = time.perf_counter_ns()
        await self.request({"type": "ping", "t": t0}, "pong", timeout)
        return (time.perf_counter_ns() - t0) / 1e6

    async def leave(self) -> None:
        if not self.closed:
            try:
                await self.send({"type": "leave"})
            except (ClientError, ConnectionError):
                pass

    async def close(self) -> None:
        """Leave, close the peer and the socket. Safe to call twice."""
        await self.leave()
        if self.pc is not None:
            pc, self.pc = self.pc, None
            await close_quietly(pc)
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 2.0)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                self._reader.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None


async def offer_without_direction() -> str:
    """A hostile-client probe's offer: browser-like, but its audio m-line lacks ``a=sendrecv``
    (aiortc cannot answer it; the server must refuse it with ``bad_sdp`` and leak nothing)."""
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio", direction="sendrecv")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp.replace("a=sendrecv\r\n", "")
    finally:
        await pc.close()
