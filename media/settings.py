"""Media-layer settings (a section of the app's typed settings)."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, Field, field_validator


class IceServer(BaseModel):
    urls: list[str] | str
    username: str | None = None
    credential: str | None = None


class MediaSettings(BaseModel):
    # Default none: aiortc's own default adds a public STUN server we cannot reach offline.
    ice_servers: list[IceServer] = Field(default_factory=list)
    # aiortc's receive jitter buffer waits for this many 20 ms packets before decoding. In aiortc
    # 1.16 that is pure delay, never slack: each arriving packet releases at most one frame, so
    # frames leave when packets arrive, N frames behind, and a late packet stalls every N alike.
    # bench/bench_media.py, one-way at N = 1/2/4 (replay through aiortc's buffer, 120 s each):
    # loopback 20/40/80 ms (live 22/44/82), 0 underruns (gaps > 60 ms) at each; link 20 ms +
    # |gauss(0, 10 ms)|: median 66/86/126 ms, 0 underruns at each (live, under CPU load: 65/88/190,
    # 0/0/12); sd 20 ms: 10 underruns at each N. A larger N only fills the 16-packet buffer sooner
    # (it drops frames when full). So 1: the lowest delay, no more underruns than 2 or 4.
    jitter_prefetch: int = Field(default=1, ge=1, le=16)
    output_frame_ms: int = Field(default=20, ge=10, le=60)
    output_sample_rate: int = 48_000
    # Shadowing: a slow mentor gets the latest frame, never a growing queue.
    relay_buffered: bool = False
    record_audio: bool = True
    record_video: bool = True  # a shadowed streamer's camera, H.264 MP4 (encoded off the loop)
    ice_disconnect_grace_s: float = Field(default=3.0, gt=0)
    # aioice skips 127.0.0.1; tests and single-machine QA gather only loopback candidates.
    ice_loopback_only: bool = False
    # A client's ICE candidates make the server send STUN checks to those addresses. Empty: any
    # address (the default, for LAN and loopback use). In production list the networks clients
    # may really be on, e.g. ["0.0.0.0/0", "::/0"] minus nothing, or your office/VPN ranges; a
    # candidate outside them (say 127.0.0.1:6379 on the server itself) is refused.
    allowed_candidate_networks: list[str] = Field(default_factory=list)

    @field_validator("allowed_candidate_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # ValueError names the bad entry
        return value
