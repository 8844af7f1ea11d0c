"""STT / LLM / TTS through the ``openai`` package (OpenAI or any compatible server).

Every failure (HTTP status, timeout, connection drop, bad payload) becomes
``ProviderError(stage, message)`` so the agent can fall back and keep the session alive.
"""

from __future__ import annotations

import io
import os
import wave
from typing import AsyncIterator, cast

import numpy as np
import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk

from coach.contracts import ChatMessage, ProviderError
from coach.settings import OpenAISettings

TTS_SAMPLE_RATE = 24_000  # OpenAI's response_format="pcm" is 24 kHz mono s16le
# Scenario voices name espeak voices ("en-us"); only these are passed through to OpenAI.
OPENAI_VOICES = frozenset({"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage",
                           "shimmer", "verse", "marin", "cedar"})


def make_client(settings: OpenAISettings) -> AsyncOpenAI:
    api_key = settings.api_key or os.environ.get("OPENAI_API_KEY")
    if not api_key:
        if not settings.base_url:
            raise ProviderError("config", "no OpenAI API key (set OPENAI_API_KEY or providers.openai.api_key)")
        api_key = "not-needed"  # local OpenAI-compatible servers usually ignore it
    return AsyncOpenAI(
        base_url=settings.base_url,
        api_key=api_key,
        timeout=settings.timeout_s,
        max_retries=settings.max_retries,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"[:300]
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    return f"{type(exc).__name__}: {exc}"[:300]


class OpenAILLM:
    def __init__(self, settings: OpenAISettings, client: AsyncOpenAI | None = None):
        self.settings = settings
        self.client = client or make_client(settings)

    async def stream_reply(self, messages: list[ChatMessage], language: str) -> AsyncIterator[str]:
        s = self.settings
        try:
            created = await self.client.chat.completions.create(
                model=s.chat_model,
                messages=[{"role": m.role, "content": m.content} for m in messages],  # type: ignore[misc]
                stream=True,
                max_tokens=s.max_tokens,
                temperature=s.temperature,
            )
            # stream=True: the SDK's overloads widen to the union only because messages are
            # plain dicts here; the call returns the stream.
            stream = cast(AsyncStream[ChatCompletionChunk], created)
            async with stream:
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - every client/transport failure maps to ProviderError
            raise ProviderError("llm", _describe(exc)) from exc


class OpenAITTS:
    sample_rate = TTS_SAMPLE_RATE

    def __init__(self, settings: OpenAISettings, client: AsyncOpenAI | None = None):
        self.settings = settings
        self.client = client or make_client(settings)

    async def synthesize(self, text: str, language: str, voice: str | None) -> AsyncIterator[bytes]:
        s = self.settings
        carry = b""  # HTTP chunks may split a sample; keep the odd byte for the next chunk
        try:
            async with self.client.audio.speech.with_streaming_response.create(
                model=s.tts_model, voice=voice if voice in OPENAI_VOICES else s.tts_voice, input=text,
                response_format="pcm",
            ) as resp:
                async for data in resp.iter_bytes():
                    data = carry + data
                    cut = len(data) & ~1
                    carry = data[cut:]
                    if cut:
                        yield data[:cut]
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ProviderError("tts", _describe(exc)) from exc


def wav_bytes(pcm16: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(np.asarray(pcm16, dtype=np.int16).tobytes())
    return buf.getvalue()


class OpenAISTT:
    def __init__(self, settings: OpenAISettings, client: AsyncOpenAI | None = None):
        self.settings = settings
        self.client = client or make_client(settings)

    async def transcribe(self, pcm16: np.ndarray, sample_rate: int, language: str) -> str:
        try:
            result = await self.client.audio.transcriptions.create(
                model=self.settings.stt_model,
                file=("utterance.wav", wav_bytes(pcm16, sample_rate), "audio/wav"),
                language=language,
            )
            return (getattr(result, "text", None) or "").strip()
        except Exception as exc:  # noqa: BLE001
            raise ProviderError("stt", _describe(exc)) from exc
