"""Shadow wiring: the mentor sees and hears the primary; the primary hears the mentor only while
whisper is on. Every outbound ``SwitchableTrack`` is re-pointed after any membership/media change.

While whisper is on, the mentor's audio also goes to the primary's ``WhisperTap`` (the shadow
recording's right channel): a buffered relay copy, decoded by its own reader and stamped at receipt
like the streamer's audio, so what the mentor said is recorded even when the live path drops frames.
"""

from __future__ import annotations

from aiortc.mediastreams import MediaStreamTrack

from media.inbound import InboundAudio
from media.relay import ShadowRelay
from server.rooms.contracts import WhisperTap
from server.rooms.peer import PeerSession


class ShadowWiring:
    def __init__(self, buffered: bool) -> None:
        self.relay = ShadowRelay()
        self.buffered = buffered
        self.whisper_on = False
        self._tap: tuple[MediaStreamTrack, WhisperTap, MediaStreamTrack, InboundAudio] | None = None
        self._ended: list[InboundAudio] = []  # readers told to stop (their proxy ended), awaited at close

    def rewire(self, primary: PeerSession | None, mentor: PeerSession | None) -> None:
        if mentor is not None:
            mentor.feed("audio", mentor.out_audio, primary.inbound.get("audio") if primary else None, self.buffered)
            mentor.feed("video", mentor.out_video, primary.inbound.get("video") if primary else None, self.buffered)
        whisper_src = mentor.inbound.get("audio") if (mentor and self.whisper_on) else None
        if primary is not None:
            primary.feed("whisper", primary.out_audio, whisper_src, self.buffered)
        self._tap_whisper(whisper_src, primary.whisper_tap if primary else None)

    def _tap_whisper(self, src: MediaStreamTrack | None, tap: WhisperTap | None) -> None:
        if self._tap is not None and src is self._tap[0] and tap is self._tap[1]:
            return
        if self._tap is not None:
            _src, _tap, proxy, reader = self._tap
            proxy.stop()  # the reader sees the track end and returns
            self._ended = [r for r in self._ended if r.running] + [reader]
            self._tap = None
        if src is None or tap is None or not tap.wanted or src.readyState != "live":
            return
        proxy = self.relay.subscribe(src, buffered=True)
        reader = InboundAudio(proxy, tap.feed, sample_rate=WhisperTap.RATE)
        reader.start()
        self._tap = (src, tap, proxy, reader)

    async def close(self) -> None:
        self._tap_whisper(None, None)
        for reader in self._ended:
            await reader.stop()
        self._ended.clear()
        await self.relay.close()
