"""Training scenarios: who the virtual customer is, what they want to know, how they close.

One YAML file per scenario in ``configs/scenarios/`` (file stem == ``id``). The same model drives
the scripted offline customer (``coach.providers.scripted``), the persona prompt for a real LLM
(``system_prompt``), keyword coaching (``script_keywords``) and per-scenario alert overrides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from coach.settings import AlertSettings, TurnTakingSettings

Language = Literal["en", "zh"]
InterruptionMode = Literal["interrupt", "ignore", "append", "keywords"]


class ScenarioError(ValueError):
    """A scenario file is missing, unreadable or invalid. The message names the file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Objection(_Strict):
    id: str = Field(min_length=1, max_length=64)
    question: str = Field(min_length=1)  # what the customer asks
    # Words in the trainee's speech that address it (case-insensitive; zh: substring match).
    triggers: list[str] = Field(min_length=1)
    follow_up: str = Field(min_length=1)  # asked again when the trainee's answer misses the point
    satisfied_reply: str = Field(min_length=1)  # short reaction when it was addressed

    @field_validator("triggers")
    @classmethod
    def _non_empty_triggers(cls, value: list[str]) -> list[str]:
        cleaned = [t.strip() for t in value if t and t.strip()]
        if not cleaned:
            raise ValueError("needs at least one non-empty trigger word")
        return cleaned


class Product(BaseModel):
    # Extra keys (ingredients, size, shipping...) are allowed: they are shown to the LLM as facts.
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    name: str = Field(min_length=1)
    price: float | str
    usual_price: float | str | None = None
    currency: str = ""
    facts: list[str] = Field(default_factory=list)


class Closing(_Strict):
    buy: str = Field(min_length=1)
    not_buy: str = Field(min_length=1)


class ViewerQuestionSpec(_Strict):
    """A viewer's chat question a shadowed streamer should answer, ``at_s`` into the stream."""

    text: str = Field(min_length=1, max_length=300)
    at_s: float = Field(ge=0, le=24 * 3600)


class Scenario(_Strict):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    title: str | dict[str, str]
    language: Language
    voice: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_+-]*$")  # espeak voice override
    greeting: str = Field(min_length=1)
    persona: str = Field(min_length=1)  # who the customer is
    goal: str = Field(min_length=1)  # what the trainee should achieve
    product: Product
    objections: list[Objection] = Field(default_factory=list)
    closing: Closing
    script_keywords: list[str] = Field(default_factory=list)  # 话术 the trainee should use
    interruption_mode: InterruptionMode = "interrupt"
    interruption_keywords: list[str] = Field(default_factory=list)
    max_turns: int = Field(default=8, ge=1, le=50)  # scripted customer decides after this many
    viewer_questions: list[ViewerQuestionSpec] = Field(default_factory=list)  # shadowed streams only
    alerts: dict[str, Any] | None = None  # overrides of coach.settings.AlertSettings fields
    turn_taking: dict[str, Any] | None = None  # overrides of coach.settings.TurnTakingSettings

    @field_validator("turn_taking")
    @classmethod
    def _known_turn_fields(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        unknown = sorted(set(value) - set(TurnTakingSettings.model_fields))
        if unknown:
            raise ValueError(f"unknown turn_taking setting(s) {unknown}; known: "
                             f"{sorted(TurnTakingSettings.model_fields)}")
        TurnTakingSettings(**value)
        return value

    @field_validator("alerts")
    @classmethod
    def _known_alert_fields(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        unknown = sorted(set(value) - set(AlertSettings.model_fields))
        if unknown:
            raise ValueError(
                f"unknown alert setting(s) {unknown}; known: {sorted(AlertSettings.model_fields)}"
            )
        AlertSettings(**value)  # type/range check now rather than at session start
        return value

    @model_validator(mode="after")
    def _unique_objection_ids(self) -> Scenario:
        ids = [o.id for o in self.objections]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate objection id(s): {dupes}")
        if self.interruption_mode == "keywords" and not self.interruption_keywords:
            raise ValueError("interruption_mode 'keywords' needs interruption_keywords")
        return self

    def title_for(self, language: str | None = None) -> str:
        if isinstance(self.title, str):
            return self.title
        lang = language or self.language
        return self.title.get(lang) or self.title.get(self.language) or next(iter(self.title.values()))

    def summary(self) -> dict[str, Any]:
        """Small public description (scenario pickers, /api/scenarios)."""
        return {
            "id": self.id,
            "title": self.title_for(),
            "language": self.language,
            "persona": self.persona,
            "goal": self.goal,
            "product": self.product.name,
            "objections": [o.id for o in self.objections],
            "script_keywords": list(self.script_keywords),
            "interruption_mode": self.interruption_mode,
        }


def _format_validation_error(path: Path, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        parts.append(f"{loc}: {e['msg']}")
    return f"{path}: invalid scenario: " + "; ".join(parts)


def load_scenario_file(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: bad YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: expected a mapping at top level, got {type(raw).__name__}")
    raw.setdefault("id", path.stem)
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(_format_validation_error(path, exc)) from exc
    if scenario.id != path.stem:
        raise ScenarioError(f"{path}: id: '{scenario.id}' must match the file name '{path.stem}'")
    return scenario


# Parsed scenarios per folder, with the (name, mtime, size) of the files they came from: parsing
# and validating the YAML costs ~15 ms a call, a stat of each file microseconds. An edited, added or
# removed file changes the signature, so edits are picked up on the next call.
_CACHE: dict[Path, tuple[tuple[tuple[str, int, int], ...], dict[str, Scenario]]] = {}


def load_scenarios(directory: str | Path) -> dict[str, Scenario]:
    """Every ``*.yaml``/``*.yml`` scenario in ``directory``, by id. Raises ScenarioError."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ScenarioError(f"{directory}: scenarios directory not found")
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    try:
        signature = tuple((p.name, st.st_mtime_ns, st.st_size) for p in files for st in [p.stat()])
    except OSError:  # a file vanished between glob and stat: parse afresh (and report it)
        signature = ()
    cached = _CACHE.get(directory)
    if signature and cached is not None and cached[0] == signature:
        return dict(cached[1])
    scenarios = _parse_all(files)
    if signature:
        _CACHE[directory] = (signature, scenarios)
    return dict(scenarios)


def _parse_all(files: list[Path]) -> dict[str, Scenario]:
    scenarios: dict[str, Scenario] = {}
    for path in files:
        scenario = load_scenario_file(path)
        if scenario.id in scenarios:
            raise ScenarioError(f"{path}: id: duplicate scenario id '{scenario.id}'")
        scenarios[scenario.id] = scenario
    return scenarios


def get_scenario(directory: str | Path, scenario_id: str) -> Scenario:
    """One scenario by id; KeyError listing the known ids when absent."""
    scenarios = load_scenarios(directory)
    try:
        return scenarios[scenario_id]
    except KeyError:
        raise KeyError(f"unknown scenario '{scenario_id}'; known: {sorted(scenarios)}") from None


# ---- persona prompt for a real LLM ---------------------------------------------------------


def _amount(value: float | str) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _facts_block(scenario: Scenario) -> str:
    p = scenario.product
    lines = [f"- name: {p.name}", f"- price today: {_amount(p.price)} {p.currency}".rstrip()]
    if p.usual_price is not None:
        lines.append(f"- usual price: {_amount(p.usual_price)} {p.currency}".rstrip())
    lines += [f"- {fact}" for fact in p.facts]
    for key, value in (p.model_extra or {}).items():
        lines.append(f"- {key}: {value}")
    return "\n".join(lines)


def system_prompt(scenario: Scenario) -> str:
    """Persona prompt: the LLM plays the live-stream shopper, the trainee is the streamer."""
    questions = "\n".join(f"{i}. {o.question}" for i, o in enumerate(scenario.objections, 1))
    if scenario.language == "zh":
        return (
            "你在扮演直播电商间里的一位真实顾客，正在和主播（对方）语音对话。\n"
            f"你的身份：{scenario.persona}\n"
            f"主播在卖的商品（主播说的可能更多，你只知道这些）：\n{_facts_block(scenario)}\n"
            f"你心里的顾虑，一次只问一个，按顺序推进；主播回答到点子上再问下一个，没答到就追问：\n{questions}\n"
            "规则：只用中文口语回答，每次 1 到 2 句，简短自然，像在直播间里说话；"
            "不要写动作、表情或旁白（不要括号、星号），不要列表，不要替主播回答，不要说你是 AI。"
            f"\n所有顾虑都解决了就下单，例如：“{scenario.closing.buy}”；"
            f"如果主播一直答不上来，就礼貌地离开，例如：“{scenario.closing.not_buy}”"
        )
    return (
        "You are role-playing a real shopper in a live-commerce stream, talking by voice with the "
        "streamer (the other speaker).\n"
        f"Who you are: {scenario.persona}\n"
        f"The product being sold (what you know about it):\n{_facts_block(scenario)}\n"
        "Your concerns. Push them one at a time, in order; move on only when the streamer "
        f"really answers, otherwise press the point:\n{questions}\n"
        "Rules: reply in spoken English only, 1-2 short sentences, natural and casual. No stage "
        "directions, actions or emotes (no brackets or asterisks), no lists, never answer for the "
        "streamer, never mention being an AI."
        f"\nWhen all your concerns are resolved, buy, e.g. \"{scenario.closing.buy}\"; "
        f"if the streamer keeps missing the point, politely leave, e.g. \"{scenario.closing.not_buy}\""
    )
