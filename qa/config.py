"""`livecoach qa` run configuration, and the prompts as each process loads them once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from qa.audio import load_wav
from qa.measure import detect_speech_span
from qa.opus_track import EncodedSound, encoded_sound

SEND_MODES = ("opus", "pcm")


@dataclass(slots=True)
class QaConfig:
    url: str
    sessions: int
    turns: int
    prompts: list[str]
    scenario: str | None = None
    barge_in: str | None = None
    ramp_s: float = 0.0
    secret: str | None = None  # sign tokens locally instead of POST /api/dev/token
    lang: str | None = None
    greet_wait_s: float = 3.0  # how long to wait for the customer's greeting before turn 1
    settle_ms: float = 800.0  # received silence that means the reply is over
    reply_timeout_s: float = 15.0
    barge_in_after_s: float = 1.0
    max_connecting: int = 8  # handshakes in flight at once (staggering alone may bunch up)
    room_prefix: str = ""
    run_timeout_s: float | None = None
    send: str = "opus"  # "opus": pre-encoded packets replayed; "pcm": frames encoded by aiortc
    light: bool = False  # judge the reply from RTP packet sizes, do not decode it
    run_id: str | None = None  # one id for the shares of a multi-process run
    indices: list[int] | None = None  # the sessions (of ``sessions``) this process runs; None = all

    def my_indices(self) -> list[int]:
        return list(range(self.sessions)) if self.indices is None else self.indices

    def validate(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"--url {self.url!r}: expected http://HOST:PORT")
        if self.sessions < 1 or self.turns < 1:
            raise ValueError("--sessions and --turns must be >= 1")
        if not self.prompts:
            raise ValueError("at least one --prompt WAV is required")
        if self.ramp_s < 0:
            raise ValueError("--ramp must be >= 0")
        if self.send not in SEND_MODES:
            raise ValueError(f"send mode {self.send!r}: expected one of {SEND_MODES}")
        for p in self.prompts + ([self.barge_in] if self.barge_in else []):
            detect_speech_span(p)  # raises ValueError with the file's problem



_PROMPTS: dict[str, np.ndarray] = {}
_ENCODING: dict[str, asyncio.Future[EncodedSound]] = {}


async def load_prompt(path: str) -> np.ndarray:
    """48 kHz mono int16 of a prompt, decoded once per file in a worker thread (PyAV)."""
    if path not in _PROMPTS:
        _PROMPTS[path] = await asyncio.get_running_loop().run_in_executor(None, load_wav, path)
    return _PROMPTS[path]


async def load_encoded(path: str) -> EncodedSound:
    """A prompt's Opus packets, encoded once per process in a worker thread (every session of the
    process shares the one encoding, even when they all ask at once)."""
    loop = asyncio.get_running_loop()
    fut = _ENCODING.get(path)
    if fut is None or fut.get_loop() is not loop:  # futures are per loop (one per run level)
        fut = _ENCODING[path] = loop.run_in_executor(None, encoded_sound, path)
    return await asyncio.shield(fut)
