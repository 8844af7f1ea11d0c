"""Media-layer settings (a section of the app's typed settings)."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, Field, field_validator, model_validator

OPUS_FRAME_MS = (10, 20, 40, 60)  # the frame durations libopus codes (at 48 kHz, the Opus RTP clock)


class IceServer(BaseModel):
    urls: list[str] | str
    username: str | None = None
    credential: str | None = None


class MediaSettings(BaseModel):
    # Default none: aiortc's own default adds a public STUN server we cannot reach offline.
    ice_servers: list[IceServer] = Field(default_factory=list)
    # The receive jitter buffer (media/jitter.py) waits for this many 20 ms packets before
    # decoding. Each arriving packet releases at most one frame (aiortc 1.16), so a larger N is
    # pure delay, never slack. bench/bench_media.py replay (120 s, virtual clock), one-way median
    # at N = 1/2/4: loopback 20/40/80 ms (live 22/44/82), 0 underruns (gaps > 60 ms) at each;
    # link 20 ms + |gauss(0, 10 ms)|: 66/86/126 ms, 0 underruns at each; with 1 % loss our buffer
    # keeps 40-75 ms at N=1 where aiortc's stock one drifts to 280-310 ms (one lost packet
    # stalls it ~320 ms and it never catches up). So 1: the lowest delay, no more underruns.
    jitter_prefetch: int = Field(default=1, ge=1, le=16)
    # Decode received audio on the event loop, not in a thread per receiver (media/inline_decode.py:
    # the thread's per-frame hand-off costs more than the ~70 µs Opus decode it offloads).
    inline_audio_decode: bool = True
    output_frame_ms: int = Field(default=20, ge=10, le=60)
    output_sample_rate: int = 48_000
    # The customer's voice leaves as Opus packets encoded on the loop (media/opus_out.py) instead
    # of frames aiortc encodes: no per-frame level loop, no thread-pool hop, and the silence
    # between replies is one cached packet, never encoded. False: the stock aiortc path.
    output_opus_inline: bool = True
    # With inline Opus: one 20 ms clock per process sends every session's packet straight to its
    # transport (media/lean_send.py), instead of a paced track and aiortc's RTP task per session.
    output_shared_clock: bool = True
    # Mono VoIP mode (hybrid SILK+CELT at these rates). en_monologue.wav (espeak), wideband PESQ
    # of the decoded speech / encode CPU per 20 ms frame on this box (its µs vary ±15 %):
    #   32 kbps: c0 2.53 / 180 µs, c5 3.52 / 280 µs, c10 3.92 / 340 µs (78 B a packet)
    #   48 kbps: c3 3.20 / 245 µs, c5 4.05 / 270 µs, c7 4.19 / 350 µs, c10 4.26 / 380 µs (115 B)
    #   64 kbps: c5 4.27 / 270 µs, c10 4.39 / 380 µs (150 B)
    # (aiortc's own path: 96 kbps stereo CELT, 4.49, ~550 µs with its level loop, 325 B.)
    # Complexity 5 is the knee: below it quality falls off fast, above it CPU rises ~40 % for
    # +0.2. At complexity 5 the bitrate costs no CPU; 48 kbps is "good" (PESQ 4) at a third of
    # the old path's bytes.
    opus_bitrate: int = Field(default=48_000, ge=6_000, le=510_000)
    opus_complexity: int = Field(default=5, ge=0, le=10)
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

    @model_validator(mode="after")
    def _opus_frame(self) -> "MediaSettings":
        opus_ok = self.output_frame_ms in OPUS_FRAME_MS and self.output_sample_rate == 48_000
        if self.output_opus_inline and not opus_ok:
            raise ValueError("output_opus_inline needs output_frame_ms in 10/20/40/60 and output_sample_rate 48000")
        return self
