"""The audio receive jitter buffer: aiortc's, with a bounded wait and a bounded backlog.

aiortc 1.16's ``JitterBuffer`` hands out at most one frame per arriving packet and waits for a
missing packet until 16 more have arrived. So one lost packet stalls audio ~320 ms, and since
it then still releases one frame per packet, the ~15 packets that piled up stay queued: the
stream is ~300 ms late for the rest of the session (jitter ratchets the same way, a little at a
time). For a conversation that is the worst trade: latency is what the trainee feels.

``AudioJitterBuffer`` (audio only; every Opus/G.711 packet is one frame):
- a frame that cannot come out because a packet is missing is given up on once ``late_packets``
  more packets wait behind the gap (the missing one is lost, or too late to be useful): the
  oldest waiting frame comes out and the gap is skipped (a late straggler is then dropped);
- whenever more than ``prefetch + max_backlog`` packets wait, the oldest are dropped down to
  that: a short glitch once instead of added delay from then on (at most ``max_backlog`` packets,
  20 ms each, beyond the prefetch ever wait).
Counts of skipped gaps and dropped packets are kept for stats.
"""

from __future__ import annotations

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add

LATE_PACKETS = 2  # wait this many packets (~40 ms) for a missing one before skipping it
MAX_BACKLOG = 1  # packets beyond the prefetch that may wait before the oldest are dropped


class AudioJitterBuffer(JitterBuffer):
    def __init__(self, capacity: int, prefetch: int = 1, is_video: bool = False,
                 late_packets: int = LATE_PACKETS, max_backlog: int = MAX_BACKLOG) -> None:
        if is_video:
            raise ValueError("AudioJitterBuffer is for audio; video keeps aiortc's JitterBuffer")
        super().__init__(capacity=capacity, prefetch=max(1, prefetch), is_video=False)
        self.late_packets = late_packets
        self.max_backlog = max_backlog
        self.skipped_gaps = 0  # packets given up on (lost or too late)
        self.dropped = 0  # packets dropped to bound the delay

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        pli, frame = super().add(packet)
        if frame is None and self._waiting() > self._prefetch + self.late_packets:
            frame = self._release_oldest()
        if frame is not None:
            self._trim()
        return pli, frame

    def _waiting(self) -> int:
        return sum(p is not None for p in self._packets)

    def _release_oldest(self) -> JitterFrame | None:
        """The oldest waiting packet as a frame, skipping the gap(s) before it."""
        assert self._origin is not None
        for _ in range(self._capacity):
            packet = self._packets[self._origin % self._capacity]
            if packet is not None:
                self.remove(1)
                return JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]
            self.skipped_gaps += 1
            self._origin = uint16_add(self._origin, 1)
        return None

    def _trim(self) -> None:
        """Drop the oldest waiting packets (and gaps) until at most ``prefetch + max_backlog`` wait."""
        assert self._origin is not None
        while self._waiting() > self._prefetch + self.max_backlog:
            if self._packets[self._origin % self._capacity] is not None:
                self.dropped += 1
            else:
                self.skipped_gaps += 1
            self.remove(1)
