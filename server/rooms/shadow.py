"""Shadow wiring: the mentor sees and hears the primary; the primary hears the mentor only while
whisper is on. Every outbound ``SwitchableTrack`` is re-pointed after any membership/media change."""

from __future__ import annotations

from media.relay import ShadowRelay
from server.rooms.peer import PeerSession


class ShadowWiring:
    def __init__(self, buffered: bool) -> None:
        self.relay = ShadowRelay()
        self.buffered = buffered
        self.whisper_on = False

    def rewire(self, primary: PeerSession | None, mentor: PeerSession | None) -> None:
        if mentor is not None:
            mentor.feed("audio", mentor.out_audio, primary.inbound.get("audio") if primary else None, self.buffered)
            mentor.feed("video", mentor.out_video, primary.inbound.get("video") if primary else None, self.buffered)
        if primary is not None:
            whisper_src = mentor.inbound.get("audio") if (mentor and self.whisper_on) else None
            primary.feed("whisper", primary.out_audio, whisper_src, self.buffered)

    async def close(self) -> None:
        await self.relay.close()
