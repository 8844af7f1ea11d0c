"""RTCPeerConnection factory and the process-wide aiortc/aioice patches we rely on.

aiortc is pinned ==1.16.0: ``set_jitter_prefetch`` replaces a private detail
(``JitterBuffer(capacity=16, prefetch=4)`` built in ``aiortc/rtcrtpreceiver.py``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aioice.ice
import aiortc.rtcrtpreceiver as _rtcrtpreceiver
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer

from media.inline_decode import use_inline_audio_decode
from media.jitter import AudioJitterBuffer
from media.settings import MediaSettings

log = logging.getLogger(__name__)

_STOCK_JITTER_BUFFER = JitterBuffer
_audio_prefetch: int = 4  # what audio receivers created from now on will use


def _jitter_buffer_for(capacity: int, prefetch: int = 0, is_video: bool = False) -> JitterBuffer:
    """What aiortc's receiver builds as ``JitterBuffer(...)``: for audio, our ``AudioJitterBuffer``
    with the configured prefetch (bounded wait and backlog, see media/jitter.py); video buffers
    keep aiortc's own, untouched."""
    if is_video:
        return _STOCK_JITTER_BUFFER(capacity=capacity, prefetch=prefetch, is_video=True)
    return AudioJitterBuffer(capacity=capacity, prefetch=_audio_prefetch)


def set_jitter_prefetch(n: int) -> None:
    """Make every AUDIO receiver created from now on wait for ``n`` packets (stock: 4 ≈ 80 ms).

    Process-wide and idempotent: the factory is swapped once, later calls only change the number.
    Receivers already created keep the value they were built with.
    """
    global _audio_prefetch
    if not 1 <= int(n) <= 16:
        raise ValueError(f"jitter prefetch must be 1..16 packets, got {n!r}")
    _audio_prefetch = int(n)
    if _rtcrtpreceiver.JitterBuffer is not _jitter_buffer_for:
        _rtcrtpreceiver.JitterBuffer = _jitter_buffer_for  # type: ignore[misc,assignment]  # the pinned patch


def get_jitter_prefetch() -> int:
    """The audio prefetch new receivers get (4 if never patched)."""
    return _audio_prefetch if _rtcrtpreceiver.JitterBuffer is _jitter_buffer_for else 4


def _loopback_host_addresses(**_kwargs: Any) -> list[str]:
    return ["127.0.0.1"]


def use_loopback_ice() -> None:
    """Gather only 127.0.0.1 host candidates (aioice normally skips loopback). Idempotent."""
    aioice.ice.get_host_addresses = _loopback_host_addresses  # type: ignore[assignment]  # keyword-only shim


def create_peer_connection(settings: MediaSettings) -> RTCPeerConnection:
    """A peer connection with exactly the configured ICE servers (none by default).

    ``RTCConfiguration()`` without servers would add Google's public STUN server, which is
    unreachable offline and slows gathering, so we always pass the list explicitly.
    Also applies ``settings.jitter_prefetch`` and ``inline_audio_decode`` (process-wide) and
    loopback-only ICE if asked.
    """
    set_jitter_prefetch(settings.jitter_prefetch)
    use_inline_audio_decode(settings.inline_audio_decode)
    if settings.ice_loopback_only:
        use_loopback_ice()
    servers = [
        RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
        for s in settings.ice_servers
    ]
    return RTCPeerConnection(RTCConfiguration(iceServers=servers))


async def close_quietly(pc: RTCPeerConnection | None, timeout_s: float = 5.0) -> None:
    """Stop the tracks we send/receive and close ``pc``; never raises (cleanup path)."""
    if pc is None:
        return
    try:
        for transceiver in pc.getTransceivers():
            for track in (transceiver.sender.track, transceiver.receiver.track):
                if track is not None:
                    try:
                        track.stop()
                    except Exception:  # a track's own stop failing must not stop cleanup
                        log.debug("track.stop() failed", exc_info=True)
    except Exception:
        log.debug("listing transceivers failed", exc_info=True)
    try:
        await asyncio.wait_for(pc.close(), timeout_s)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.warning("RTCPeerConnection.close() failed", exc_info=True)


async def connect_in_process(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    """Offer/answer between two peers in one process (tests, bench, loopback QA).

    aiortc gathers all candidates before ``setLocalDescription`` returns, so no trickle needed.
    """
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
