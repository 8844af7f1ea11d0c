"""Incremental clause splitting of streamed LLM text, and played-text truncation.

Clauses keep their exact original characters (including trailing spaces), so the planned reply
is ``"".join(clauses)`` and any played text is a prefix of it.
"""

from __future__ import annotations

# Strong enders always end a clause; soft ones only once the clause is long enough, so TTS can
# start on the first clause early without speaking two-character fragments.
_EN_STRONG = ".!?;"
_EN_SOFT = ",:—"
EN_SOFT_MIN_CHARS = 40  # ~2.5 s of speech: long enough to sound like a phrase
_ZH_STRONG = "。！？；!?;"
_ZH_SOFT = "，,、…："
_CLOSERS = "\"'”’)）」』"


class ClauseSplitter:
    def __init__(self, language: str, min_chars: int | None = None):
        self.language = language
        self.min_chars = min_chars if min_chars is not None else (6 if language == "zh" else 2)
        self._buf = ""

    def push(self, delta: str) -> list[str]:
        """Add a text delta; return the clauses it completed (possibly none)."""
        self._buf += delta
        out: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                return out
            out.append(self._buf[:cut])
            self._buf = self._buf[cut:]

    def flush(self) -> list[str]:
        """End of stream: the remainder is the last clause (if it has any text)."""
        rest, self._buf = self._buf, ""
        return [rest] if rest.strip() else []

    def _find_cut(self) -> int | None:
        buf = self._buf
        if self.language == "zh":
            for i, ch in enumerate(buf):
                strong = ch in _ZH_STRONG
                if not strong and ch not in _ZH_SOFT:
                    continue
                j = i + 1
                while j < len(buf) and (buf[j] in _CLOSERS or buf[j] in _ZH_STRONG or buf[j] == "…"):
                    j += 1
                if j == len(buf) and ch in "!?;.…":  # ASCII/ellipsis may continue ("...", "?!")
                    return None
                if strong or len(buf[:j].strip()) >= self.min_chars:
                    while j < len(buf) and buf[j].isspace():
                        j += 1
                    return j
            return None
        # English: an ender followed by whitespace ("3.5" and "e.g." mid-word don't split). A
        # comma, colon or dash ends a clause only in a long sentence, so the first words of a
        # long reply reach TTS early without chopping short phrases.
        for i, ch in enumerate(buf):
            strong = ch in _EN_STRONG
            if not strong and ch not in _EN_SOFT:
                continue
            j = i + 1
            while j < len(buf) and (buf[j] in _CLOSERS or buf[j] in _EN_STRONG):
                j += 1
            if j >= len(buf) or not buf[j].isspace():
                continue  # wait for the next char to know it is a boundary
            if len(buf[:j].strip()) < (self.min_chars if strong else EN_SOFT_MIN_CHARS):
                continue
            while j < len(buf) and buf[j].isspace():
                j += 1
            return j
        return None


def split_all(text: str, language: str, min_chars: int | None = None) -> list[str]:
    sp = ClauseSplitter(language, min_chars)
    return sp.push(text) + sp.flush()


def played_text(segments: list[tuple[str, float]], played_ms: float, language: str = "en") -> str:
    """Text actually heard after ``played_ms`` of audio.

    ``segments`` are (clause text, audio duration ms) in playback order. Whole clauses count
    fully; the clause being played contributes a prefix proportional to its played share (cut
    back to a word boundary for space-separated languages so no half word is claimed).
    """
    out = ""
    remaining = max(0.0, played_ms)
    for text, dur in segments:
        if dur <= 0:
            break
        if remaining >= dur - 1e-6:
            out += text
            remaining -= dur
            continue
        n = int(len(text) * remaining / dur)
        part = text[:n]
        if language != "zh" and n < len(text) and not text[n].isspace():
            cut = part.rfind(" ")
            part = part[: cut + 1] if cut >= 0 else ""
        out += part
        break
    return out.rstrip()
