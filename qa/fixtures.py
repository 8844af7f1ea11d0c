"""Speech and noise fixtures the tests, benches and `livecoach qa` use, made here with espeak-ng + sox.

The project owns its test audio: nothing is read from outside the repository. Every file is
48 kHz mono 16-bit WAV with 1.0 s of silence before the sound and 1.5 s after (a client can
connect before speech starts; a VAD sees the end). Speech onset is at 1.0 s, the offset at
``duration - 1.5 s``.

Files are built on demand into a cache keyed by the spec and the tool versions, so a change of
text or of espeak-ng rebuilds them and two runs on one machine share one build:

    python -m qa.fixtures [OUT_DIR]      # prints the folder that holds the WAVs

``LIVECOACH_FIXTURES`` overrides the folder (files there are used as they are).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

RATE = 48_000
LEAD_S = 1.0
TAIL_S = 1.5
FORMAT = 2  # bump when the way files are made changes (the cache key includes it)


@dataclass(frozen=True)
class Speech:
    """One fixture: spoken parts joined by pauses (``pauses_s[i]`` follows ``parts[i]``)."""

    name: str
    voice: str  # espeak-ng voice
    parts: tuple[str, ...]
    pauses_s: tuple[float, ...] = ()
    text: str = ""  # what a perfect transcript says (for WER/CER checks)
    language: str = "en"
    speed_wpm: int | None = None  # espeak-ng -s (its default is 175 words per minute)


@dataclass(frozen=True)
class Noise:
    """A noise burst (a cough or click stand-in): sox synth, repeatable."""

    name: str
    duration_s: float
    kind: str = "brownnoise"
    gain_db: float = -6.0
    effects: tuple[str, ...] = field(default_factory=tuple)


EN = "en-us"
# On Debian 12, -v cmn reads Hanzi as pinyin with English tone numbers; pinyin input with the
# cmn-latn-pinyin voice gives real tonal phonemes.
ZH = "cmn-latn-pinyin"

_EN_PAUSE_A = "This cream is made for"
_EN_PAUSE_B = "people with sensitive skin, is that right?"
_ZH_PAUSE_A = "zhe4 kuan3 mian4 shuang1 shi4 zhuan1 men2 gei3"
_ZH_PAUSE_B = "min3 gan3 ji1 de5 ren2 yong4 de5 ma5"
_EN_MONOLOGUE = (
    "Welcome back everyone, today I am showing you our best selling face cream. "
    "It is made for sensitive skin, with no alcohol and no fragrance, so it will not sting. "
    "You only need a small amount every morning and every evening. "
    "The price today is ninety nine yuan for two bottles, and shipping is free. "
    "If it does not suit you, you can return it within seven days, no questions asked. "
    "So add it to your cart now before the stock runs out."
)
_ZH_MONOLOGUE = (
    "da4 jia1 hao3 huan1 ying2 lai2 dao4 zhi2 bo1 jian1 jin1 tian1 gei3 da4 jia1 jie4 shao4 "
    "yi1 kuan3 mian4 shuang1 ta1 shi4 zhuan1 men2 wei4 min3 gan3 ji1 she4 ji4 de5 "
    "mei2 you3 jiu3 jing1 ye3 mei2 you3 xiang1 jing1 mei3 tian1 zao3 wan3 ge4 yong4 yi2 ci4 "
    "jin1 tian1 liang3 ping2 zhi3 yao4 jiu3 shi2 jiu3 yuan2 hai2 bao1 you2 "
    "qi1 tian1 wu2 li3 you2 tui4 huo4 xi3 huan1 de5 peng2 you5 gan3 kuai4 xia4 dan1 ba5"
)

SPECS: tuple[Speech | Noise, ...] = (
    Speech("en_question.wav", EN, ("Hi, does this face cream suit sensitive skin?",),
           text="Hi, does this face cream suit sensitive skin?"),
    Speech("en_price_returns.wav", EN,
           ("How much is it today, and can I return it if it does not work for me?",),
           text="How much is it today, and can I return it if it does not work for me?"),
    Speech("en_interrupt.wav", EN, ("Wait, sorry, let me stop you there.",),
           text="Wait, sorry, let me stop you there."),
    Speech("zh_question.wav", ZH, ("zhe4 kuan3 mian4 shuang1 shi4 he2 min3 gan3 ji1 ma5",),
           text="这款面霜适合敏感肌吗", language="zh"),
    Speech("en_pause_complete.wav", EN, (f"{_EN_PAUSE_A} {_EN_PAUSE_B}",),
           text=f"{_EN_PAUSE_A} {_EN_PAUSE_B}"),
    *(Speech(f"en_pause_{int(p * 10):02d}.wav", EN, (_EN_PAUSE_A, _EN_PAUSE_B), (p,),
             text=f"{_EN_PAUSE_A} {_EN_PAUSE_B}") for p in (0.7, 1.0, 1.2)),
    Speech("zh_pause_complete.wav", ZH, (f"{_ZH_PAUSE_A} {_ZH_PAUSE_B}",),
           text="这款面霜是专门给敏感肌的人用的吗", language="zh"),
    *(Speech(f"zh_pause_{int(p * 10):02d}.wav", ZH, (_ZH_PAUSE_A, _ZH_PAUSE_B), (p,),
             text="这款面霜是专门给敏感肌的人用的吗", language="zh") for p in (0.7, 1.0, 1.2)),
    Speech("en_monologue.wav", EN, (_EN_MONOLOGUE,), text=_EN_MONOLOGUE),
    # A streamer talking far too fast (espeak-ng -s 260; the alert limit is 190 words/min).
    Speech("en_fast_monologue.wav", EN, (_EN_MONOLOGUE,), text=_EN_MONOLOGUE, speed_wpm=260),
    Speech("zh_monologue.wav", ZH, (_ZH_MONOLOGUE,), language="zh",
           text="大家好欢迎来到直播间今天给大家介绍一款面霜它是专门为敏感肌设计的没有酒精也没有香精"
                "每天早晚各用一次今天两瓶只要九十九元还包邮七天无理由退货喜欢的朋友赶快下单吧"),
    # Interjections: a barge-in that says only this is a false interruption, not a turn.
    Speech("en_filler.wav", EN, ("Ah!",), text="Ah!"),
    Speech("zh_filler.wav", ZH, ("en4",), text="嗯", language="zh"),
    # A cough stand-in: 300 ms of brown noise with a fast attack and decay.
    Noise("cough.wav", 0.3, "brownnoise", -3.0, ("fade", "t", "0.02", "0.3", "0.12")),
    Noise("click.wav", 0.12, "whitenoise", -12.0, ("fade", "t", "0.005", "0.12", "0.05")),
    Noise("white_noise.wav", 0.25, "whitenoise", -20.0),
)

BY_NAME = {spec.name: spec for spec in SPECS}


class FixtureError(RuntimeError):
    """espeak-ng or sox is missing or failed."""


def _tool_versions() -> str:
    out = []
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise FixtureError(f"{tool} not found: apt-get install espeak-ng sox")
        proc = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
        out.append((proc.stdout or proc.stderr).strip().splitlines()[0] if (proc.stdout or proc.stderr) else tool)
    return "|".join(out)


def spec_key() -> str:
    """Hash of the specs and tool versions: the cache folder's name."""
    blob = json.dumps([repr(s) for s in SPECS] + [_tool_versions(), RATE, LEAD_S, TAIL_S, FORMAT])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise FixtureError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()[:300]}")


def _speak(voice: str, text: str, out: Path, speed_wpm: int | None = None) -> None:
    raw = out.with_suffix(".raw.wav")
    speed = ["-s", str(speed_wpm)] if speed_wpm else []
    _run(["espeak-ng", "-v", voice, *speed, "-w", str(raw), text])
    # -R: repeatable (fixed dither seed), so the same espeak output gives the same bytes. The
    # silence effects trim espeak's own leading/trailing silence, so onsets and pauses are exact.
    _run(["sox", "-R", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(out),
          "silence", "1", "0.005", "0.1%", "reverse", "silence", "1", "0.005", "0.1%", "reverse"])
    raw.unlink()


def _build_one(spec: Speech | Noise, out: Path, work: Path) -> None:
    if isinstance(spec, Noise):
        _run(["sox", "-R", "-n", "-r", str(RATE), "-c", "1", "-b", "16", str(out),
              "synth", str(spec.duration_s), spec.kind, "gain", str(spec.gain_db),
              *spec.effects, "pad", str(LEAD_S), str(TAIL_S)])
        return
    pieces: list[str] = []
    for i, text in enumerate(spec.parts):
        part = work / f"{out.stem}.part{i}.wav"
        _speak(spec.voice, text, part, spec.speed_wpm)
        pieces.append(str(part))
        if i < len(spec.pauses_s):
            gap = work / f"{out.stem}.gap{i}.wav"
            _run(["sox", "-R", "-n", "-r", str(RATE), "-c", "1", "-b", "16", str(gap),
                  "trim", "0", str(spec.pauses_s[i])])
            pieces.append(str(gap))
    _run(["sox", "-R", *pieces, str(out), "pad", str(LEAD_S), str(TAIL_S)])


def build(out_dir: Path) -> Path:
    """Make every fixture in ``out_dir`` (atomically: a half-built folder is never used)."""
    out_dir = Path(out_dir)
    if (out_dir / ".complete").exists():
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".building-") as tmp:
        work = Path(tmp)
        for spec in SPECS:
            _build_one(spec, work / spec.name, work)
        for leftover in work.glob("*.part*.wav"):
            leftover.unlink()
        for leftover in work.glob("*.gap*.wav"):
            leftover.unlink()
        manifest = {s.name: {"text": s.text, "language": s.language} for s in SPECS if isinstance(s, Speech)}
        (work / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1))
        (work / ".complete").write_text(spec_key())
        try:
            work.rename(out_dir)
        except OSError:
            if not (out_dir / ".complete").exists():  # another process won the race: theirs is fine
                raise
            shutil.rmtree(work, ignore_errors=True)
    return out_dir


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/livecoach/fixtures/<key>`` (or ~/.cache/...)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "livecoach" / "fixtures" / spec_key()


def fixtures_dir() -> Path:
    """The folder holding the fixtures: ``LIVECOACH_FIXTURES`` if set, else the built cache."""
    override = os.environ.get("LIVECOACH_FIXTURES")
    if override:
        return Path(override)
    return build(default_cache())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        folder = build(Path(args[0]) / spec_key()) if args else fixtures_dir()
    except FixtureError as exc:
        print(f"fixtures: {exc}", file=sys.stderr)
        return 1
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
