"""The shared 20 ms send clock (media/lean_send.py) with real aiortc peers on loopback."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from media.lean_send import LeanClock
from media.opus_out import ClockedOpusTrack, add_output_track, output_track
from media.peer import close_quietly, connect_in_process, create_peer_connection, set_jitter_prefetch
from media.settings import MediaSettings
from tests.test_opus_out import AMP, TONE_HZ, _peak_hz, _tone, _until


@pytest.fixture(autouse=True)
def _stock_prefetch():
    yield
    set_jitter_prefetch(4)


class _Link:
    """A sends a clocked customer track to B; B records RTP headers and decodes."""

    def __init__(self, settings: MediaSettings) -> None:
        self.a, self.b = create_peer_connection(settings), create_peer_connection(settings)
        self.track = output_track(settings)
        assert isinstance(self.track, ClockedOpusTrack)
        self.streams: list = []
        add_output_track(self.a, self.track)
        sender = self.a.getTransceivers()[0].sender
        original_send = sender.send

        async def send(parameters) -> None:
            await original_send(parameters)
            self.streams.append(next(s for s in LeanClock.current().streams if s.sender is sender))

        sender.send = send  # the stream the clock made for this sender, for the test to look at
        self.rtp: list[tuple[int, int, int]] = []
        self.audio: list[np.ndarray] = []
        self.reader: asyncio.Task[None] | None = None
        self.b.on("track", self._on_track)

    def _on_track(self, remote) -> None:
        receiver = next(t.receiver for t in self.b.getTransceivers() if t.kind == "audio")
        original = receiver._handle_rtp_packet

        async def tap(packet, arrival_time_ms: int) -> None:
            self.rtp.append((packet.sequence_number, packet.timestamp, len(packet.payload)))
            await original(packet, arrival_time_ms=arrival_time_ms)

        receiver._handle_rtp_packet = tap

        async def read() -> None:
            while True:
                self.audio.append((await remote.recv()).to_ndarray().reshape(-1).copy())

        self.reader = asyncio.create_task(read())

    async def __aenter__(self) -> "_Link":
        await connect_in_process(self.a, self.b)
        await _until(lambda: len(self.rtp) > 10 and self.streams)
        return self

    async def __aexit__(self, *exc) -> None:
        await close_quietly(self.a)
        await close_quietly(self.b)
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)


async def test_clocked_track_is_heard_whole_with_a_continuous_stream() -> None:
    settings = MediaSettings(jitter_prefetch=1, ice_loopback_only=True)
    async with _Link(settings) as link, _Link(settings) as other:
        clock = LeanClock.current()
        assert {id(link.streams[0]), id(other.streams[0])} <= {id(s) for s in clock.streams}  # one clock for both
        stream = link.streams[0]
        await _until(lambda: stream.packets > 20)
        sent_before = stream.packets
        link.track.push("hello", _tone(600).tobytes(), 48_000)  # idle: the first frame leaves at once
        assert stream.packets == sent_before + 1 and link.track.stats["early_starts"] == 1
        link.track.end("hello")
        await asyncio.wait_for(link.track.wait_done("hello"), 5)
        await _until(lambda: sum(1 for _, _, size in link.rtp if size > 8) >= 30)  # 600 ms of speech arrived
        sender = stream.sender
        assert sender._RTCRtpSender__packet_count == stream.packets  # RTCP sender reports count them
        seqs, stamps = [s for s, _, _ in link.rtp], [t for _, t, _ in link.rtp]
        assert all((s2 - s1) & 0xFFFF == 1 for s1, s2 in zip(seqs, seqs[1:])), "lost or reordered packets"
        assert all((t2 - t1) & 0xFFFFFFFF == 960 for t1, t2 in zip(stamps, stamps[1:]))
        assert {size for _, _, size in link.rtp if size <= 8} == {3}
        await _until(lambda: sum(a.size for a in link.audio) >= 960 * len(link.rtp) - 2 * 960)
        audio = np.concatenate(link.audio)
        onset = int(np.argmax(np.abs(audio) > AMP / 4))
        hello = audio[onset + 480 : onset + 480 + 24_000]
        assert abs(_peak_hz(hello) - TONE_HZ) < 5
        assert min(np.abs(hello[i : i + 960]).max() for i in range(0, hello.size - 960, 960)) > AMP / 2  # no gap
        link.track.stop()
        await _until(lambda: stream not in clock.streams)  # a stopped track leaves the clock
        assert other.streams[0] in clock.streams


async def test_the_clock_stops_when_no_stream_is_left() -> None:
    settings = MediaSettings(jitter_prefetch=1, ice_loopback_only=True)
    async with _Link(settings) as link:
        clock = LeanClock.current()
        task = clock._task
        assert task is not None and not task.done()
    await _until(lambda: not clock.streams)
    await asyncio.wait_for(task, 2)
    assert link.track.readyState == "ended"
