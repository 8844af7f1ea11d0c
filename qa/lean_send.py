"""Lean send path of the light QA load generator: prompts pre-encoded once (``OpusFileTrack``)
sent by the event loop's shared 20 ms clock (media/lean_send.py), past aiortc's RTCRtpSender.

With ``OpusFileTrack`` alone, each simulated trainee costs an RTCRtpSender task that awaits the
track's recv() with its own 20 ms sleep, an av.Packet, an RtpPacket object, its serialization
with header extensions and two NTP clock reads per packet. On the lean clock a tick is one
synchronous pass over the sessions due (see media/lean_send.py); the clip onset/offset marks are
timed as each packet leaves. The sessions are spread over ``PHASES`` phases of the 20 ms period:
a server fed by real clients gets their packets at random phases, not all in one instant.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCPeerConnection

from media.lean_send import Parking
from media.lean_send import attach_lean_sender as attach_to_clock
from qa.opus_track import FRAME_SAMPLES, OpusFileTrack

PHASES = 5  # sending phases per 20 ms (4 ms apart)


class LeanOpusTrack(OpusFileTrack):
    """An ``OpusFileTrack`` whose packets the lean clock sends. aiortc's sender task awaits
    recv() until the track stops (then recv raises, as a stopped track does)."""

    frame_samples = FRAME_SAMPLES

    def __init__(self) -> None:
        super().__init__()
        self._parking = Parking()

    async def recv(self) -> Any:  # never a frame: the lean clock sends this track's packets
        await self._parking.wait(self.readyState == "live")

    def stop(self) -> None:
        super().stop()
        self._parking.release()


def attach_lean_sender(pc: RTCPeerConnection, track: LeanOpusTrack) -> None:
    """Send ``track``'s packets on the loop's lean clock (``PHASES`` phases) once its sender
    starts; call before the offer."""
    attach_to_clock(pc, track, phases=PHASES)
