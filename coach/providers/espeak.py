"""Offline TTS: espeak-ng as a subprocess, streamed.

espeak-ng writes a WAV to stdout as it synthesizes (22 050 Hz, 16-bit mono; the 44-byte header
carries a placeholder length), so we strip the header and yield raw PCM as it arrives: the first
chunk exists ~10 ms after spawn. Mandarin uses ``cmn-latn-pinyin``: on Debian 12 ``cmn``/``zh``
read characters as pinyin with English tone numbers (measured in the offline-stack notes).
"""

from __future__ import annotations

import asyncio
import re
from typing import AsyncIterator

from coach.contracts import ProviderError
from coach.settings import EspeakSettings

WAV_HEADER_BYTES = 44
READ_BYTES = 8192  # ~186 ms of audio per read at most; smaller if less is ready
_VOICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+-]{0,63}$")


class EspeakTTS:
    """coach.contracts.TTSProvider backed by espeak-ng."""

    sample_rate = 22_050

    def __init__(self, settings: EspeakSettings | None = None):
        self.settings = settings or EspeakSettings()

    def voice_for(self, language: str, voice: str | None = None) -> str:
        chosen = voice or self.settings.voices.get(language) or self.settings.voices.get("en", "en-us")
        if not _VOICE_RE.match(chosen):
            raise ProviderError("tts", f"invalid espeak voice name {chosen!r}")
        return chosen

    async def synthesize(self, text: str, language: str, voice: str | None = None) -> AsyncIterator[bytes]:
        """Yield mono int16 PCM at 22 050 Hz. Closing the generator early kills espeak-ng."""
        text = text.strip()
        if not text:
            return
        args = [
            self.settings.binary,
            "-v",
            self.voice_for(language, voice),
            "-s",
            str(self.settings.words_per_minute),
            "--stdout",
            "--",  # text starting with "-" must not be read as an option
            text,
        ]
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError as exc:
            raise ProviderError("tts", f"espeak-ng binary not found: {self.settings.binary!r}") from exc
        except OSError as exc:
            raise ProviderError("tts", f"cannot start espeak-ng: {exc}") from exc

        assert proc.stdout is not None and proc.stderr is not None
        header_left = WAV_HEADER_BYTES
        carry = b""  # odd trailing byte: int16 samples must not be split across chunks
        produced = 0
        try:
            while True:
                data = await proc.stdout.read(READ_BYTES)
                if not data:
                    break
                if header_left:
                    skip = min(header_left, len(data))
                    header_left -= skip
                    data = data[skip:]
                data = carry + data
                cut = len(data) & ~1
                carry = data[cut:]
                if cut:
                    produced += cut
                    yield data[:cut]
            # stdout closed: espeak-ng is done; stderr is small (error text only).
            err = (await proc.stderr.read()).decode("utf-8", "replace").strip()
            rc = await proc.wait()
            if rc != 0 or (produced == 0 and err):
                raise ProviderError("tts", f"espeak-ng failed (rc={rc}): {err or 'no audio'}")
        finally:
            # Consumer stopped early (aclose/cancel) or an error: never leave a process behind.
            if proc.returncode is None:
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
            # Drain the pipes to EOF (at most one pipe buffer after the kill) and reap the process:
            # a paused, never-EOF'd pipe would keep the transport open until GC, after the loop.
            await proc.communicate()
