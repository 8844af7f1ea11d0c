"""Pick the STT / LLM / TTS implementations named by the settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coach.contracts import LLMProvider, STTProvider, TTSProvider
from coach.settings import ProviderSettings


@dataclass
class Providers:
    stt: STTProvider
    llm: LLMProvider
    tts: TTSProvider
    fallback_line: dict[str, str] | None = None  # per language; None = ProviderSettings default
    http_client: Any = None  # the shared AsyncOpenAI, when a stage uses it

    async def aclose(self) -> None:
        """Close the HTTP pool (its connections would outlive the session otherwise)."""
        if self.http_client is not None:
            client, self.http_client = self.http_client, None
            await client.close()


def build_providers(settings: ProviderSettings, scenario: Any) -> Providers:
    """Offline classes are imported lazily: their heavy deps load only when chosen."""
    client = None
    if "openai" in (settings.stt, settings.llm, settings.tts):
        from coach.providers.openai_provider import make_client

        client = make_client(settings.openai)  # one HTTP pool for the three stages

    if settings.stt == "openai":
        from coach.providers.openai_provider import OpenAISTT

        stt: Any = OpenAISTT(settings.openai, client)
    else:
        from coach.providers.whisper import WhisperSTT

        stt = WhisperSTT(settings.whisper)

    if settings.llm == "openai":
        from coach.providers.openai_provider import OpenAILLM

        llm: Any = OpenAILLM(settings.openai, client)
    else:
        from coach.providers.scripted import ScriptedCustomerLLM

        llm = ScriptedCustomerLLM(scenario)

    if settings.tts == "openai":
        from coach.providers.openai_provider import OpenAITTS

        tts: Any = OpenAITTS(settings.openai, client)
    else:
        from coach.providers.espeak import EspeakTTS

        tts = EspeakTTS(settings.espeak)

    return Providers(stt=stt, llm=llm, tts=tts, fallback_line=dict(settings.fallback_line), http_client=client)
