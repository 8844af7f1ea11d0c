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
    # aiortc's receive jitter buffer waits for this many 20 ms packets before decoding.
    # Measured one-way on loopback (bench/bench_media.py): 1 -> 22 ms, 2 -> 44 ms, 4 (aiortc
    # stock) -> 82 ms. 2 keeps one packet of slack for reordering/late packets that 1 lacks;
    # 4 spends 40 ms more each way for slack a good link does not need.
    jitter_prefetch: int = Field(default=2, ge=1, le=16)
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
