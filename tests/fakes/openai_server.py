"""A local OpenAI-compatible HTTP server for tests and benches (the only allowed double).

    async with FakeOpenAI(reply="Hello there. How can I help?") as fake:
        settings = OpenAISettings(base_url=fake.base_url, api_key="test")

Chat streams the configured reply as SSE chunks with a first-token delay and a per-chunk delay;
``llm_mode`` = "ok" | "error" (HTTP 500) | "hang" (never answers) | "abort" (drops mid-stream).
Transcriptions return ``stt_text``; speech returns 24 kHz s16 PCM of a 220 Hz tone lasting
``tts_ms_per_char`` per character. Every request is recorded in ``requests``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

TTS_RATE = 24_000


@dataclass
class Recorded:
    path: str
    t_ns: int
    body: dict[str, Any] = field(default_factory=dict)


class FakeOpenAI:
    def __init__(
        self,
        reply: str = "Sure. It is gentle on sensitive skin, and it has no fragrance at all.",
        *,
        first_token_delay_s: float = 0.0,
        chunk_delay_s: float = 0.0,
        chunk_chars: int = 6,
        llm_mode: str = "ok",
        stt_text: str = "Hello.",
        stt_script: list[tuple[float, str]] | None = None,
        stt_delay_s: float = 0.0,
        stt_mode: str = "ok",
        tts_ms_per_char: float = 60.0,
        tts_delay_s: float = 0.0,
        tts_chunk_bytes: int = 4801,  # odd on purpose: clients must keep remainders
        tts_mode: str = "ok",
    ):
        self.reply = reply
        self.first_token_delay_s = first_token_delay_s
        self.chunk_delay_s = chunk_delay_s
        self.chunk_chars = chunk_chars
        self.llm_mode = llm_mode
        self.stt_text = stt_text
        # (up to seconds of 16 kHz audio, text): the words heard so far, for speculative STT
        self.stt_script = sorted(stt_script or [])
        self.stt_delay_s = stt_delay_s
        self.stt_mode = stt_mode
        self.tts_ms_per_char = tts_ms_per_char
        self.tts_delay_s = tts_delay_s
        self.tts_chunk_bytes = tts_chunk_bytes
        self.tts_mode = tts_mode
        self.requests: list[Recorded] = []
        self.stt_audio_sizes: list[int] = []
        self._hangs: set[asyncio.Event] = set()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # ---- lifecycle --------------------------------------------------------------------
    async def __aenter__(self) -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/audio/transcriptions", self._transcribe)
        app.router.add_post("/v1/audio/speech", self._speech)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ev in self._hangs:
            ev.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def paths(self, suffix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(suffix)]

    async def _hang(self) -> None:
        ev = asyncio.Event()
        self._hangs.add(ev)
        try:
            await ev.wait()
        finally:
            self._hangs.discard(ev)

    @staticmethod
    def _error(status: int = 500, message: str = "fake failure") -> web.Response:
        body = {"error": {"message": message, "type": "server_error", "code": None}}
        return web.json_response(body, status=status)

    # ---- handlers -----------------------------------------------------------------------
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Recorded(request.path, time.perf_counter_ns(), body))
        if self.llm_mode == "error":
            return self._error()
        if self.llm_mode == "hang":
            await self._hang()
            return self._error(503, "released")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        try:
            return await self._stream_chat(request, resp, body)
        except ConnectionResetError:  # the client stopped reading (a cancelled request): as a real API
            return resp

    async def _stream_chat(self, request: web.Request, resp: web.StreamResponse,
                           body: dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(self.first_token_delay_s)
        pieces = [self.reply[i : i + self.chunk_chars] for i in range(0, len(self.reply), self.chunk_chars)]
        for n, piece in enumerate(pieces):
            if self.llm_mode == "abort" and n >= max(1, len(pieces) // 2):
                request.transport.close()  # type: ignore[union-attr]  # drop the connection mid-stream
                return resp
            if n and self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        end = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        await resp.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
        await resp.write_eof()
        return resp

    async def _transcribe(self, request: web.Request) -> web.Response:
        try:
            form = await request.post()
        except ConnectionResetError:  # the client gave up the upload (a dropped speculation)
            return web.Response(status=499)
        f = form.get("file")
        size = len(f.file.read()) if hasattr(f, "file") else 0  # type: ignore[union-attr]
        self.stt_audio_sizes.append(size)
        fields = {k: str(v) for k, v in form.items() if k != "file"}
        self.requests.append(Recorded(request.path, time.perf_counter_ns(), {**fields, "audio_bytes": size}))
        if self.stt_mode == "error":
            return self._error()
        if self.stt_mode == "hang":
            await self._hang()
        await asyncio.sleep(self.stt_delay_s)
        seconds = max(0, size - 44) / 32000  # WAV of 16 kHz s16 mono
        text = next((t for upto, t in self.stt_script if seconds <= upto), self.stt_text)
        return web.json_response({"text": text})

    def tone(self, text: str) -> bytes:
        n = int(TTS_RATE * len(text) * self.tts_ms_per_char / 1000)
        t = np.arange(n) / TTS_RATE
        return (np.sin(2 * np.pi * 220.0 * t) * 8000).astype(np.int16).tobytes()

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Recorded(request.path, time.perf_counter_ns(), body))
        if self.tts_mode == "error":
            return self._error()
        await asyncio.sleep(self.tts_delay_s)
        pcm = self.tone(str(body.get("input", "")))
        resp = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await resp.prepare(request)
        for i in range(0, len(pcm), self.tts_chunk_bytes):
            await resp.write(pcm[i : i + self.tts_chunk_bytes])
        await resp.write_eof()
        return resp
