"""Scenario YAML loading/validation and the scripted offline customer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from coach.alerts import effective_alert_settings
from coach.contracts import ChatMessage
from coach.providers.scripted import ScriptedCustomerLLM, addresses, is_garbled, split_clauses
from coach.scenarios import ScenarioError, get_scenario, load_scenarios, system_prompt
from coach.settings import AlertSettings
from server.settings import PACKAGED_CONFIGS

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "configs" / "scenarios"
REQUIRED = {
    "skincare-sensitive-zh",
    "skincare-sensitive-en",
    "price-haggler-en",
    "price-haggler-zh",
    "returns-worried-en",
}

GOOD_YAML = """\
id: {id}
title: Test
language: en
greeting: Hi there.
persona: A tester.
goal: Sell it.
product: {{name: Cream, price: 10, facts: [nice]}}
objections:
  - id: scent
    question: Does it smell?
    triggers: [fragrance]
    follow_up: But does it smell?
    satisfied_reply: Good.
closing: {{buy: I'll buy it., not_buy: No thanks.}}
"""


def test_all_shipped_scenarios_load():
    scenarios = load_scenarios(SCENARIOS)
    assert REQUIRED <= set(scenarios)
    for sid, sc in scenarios.items():
        assert sc.id == sid
        assert sc.language in ("en", "zh")
        assert len(sc.objections) >= 3, sid
        assert sc.script_keywords, sid
        assert sc.product.facts, sid
        # Overrides (if any) must produce valid alert settings (as the live alerts apply them).
        assert isinstance(effective_alert_settings(AlertSettings(), sc), AlertSettings)
    assert effective_alert_settings(AlertSettings(), scenarios["price-haggler-en"]).unanswered_question_s == 6.0
    assert scenarios["skincare-sensitive-zh"].title_for("en") == "Sensitive-skin shopper (Chinese)"


def test_get_scenario_unknown_lists_known_ids():
    assert get_scenario(SCENARIOS, "skincare-sensitive-en").language == "en"
    with pytest.raises(KeyError) as err:
        get_scenario(SCENARIOS, "nope")
    assert "nope" in str(err.value) and "skincare-sensitive-zh" in str(err.value)


def test_system_prompt_has_persona_objections_and_rules():
    scenarios = load_scenarios(SCENARIOS)
    en = system_prompt(scenarios["skincare-sensitive-en"])
    assert scenarios["skincare-sensitive-en"].persona in en
    assert "one at a time" in en and "1-2 short sentences" in en and "No stage" in en
    for obj in scenarios["skincare-sensitive-en"].objections:
        assert obj.question in en
    zh = system_prompt(scenarios["skincare-sensitive-zh"])
    assert "一次只问一个" in zh and "1 到 2 句" in zh and "舒缓修护面霜" in zh


@pytest.mark.parametrize(
    "body, needle",
    [
        ("id: x\ntitle: [unclosed\n", "bad YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        (GOOD_YAML.format(id="bad").replace("closing:", "closings:"), "closing"),
        (GOOD_YAML.format(id="bad") + "colour: red\n", "colour"),
        (GOOD_YAML.format(id="bad") + "alerts: {dead_air: 3}\n", "dead_air"),
        (GOOD_YAML.format(id="bad") + "alerts: {dead_air_s: -1}\n", "alerts"),
        (GOOD_YAML.format(id="bad").replace("language: en", "language: fr"), "language"),
        (GOOD_YAML.format(id="bad").replace("[fragrance]", "[]"), "objections.0.triggers"),
        (GOOD_YAML.format(id="other"), "must match the file name"),
        (GOOD_YAML.format(id="bad") + "interruption_mode: keywords\n", "interruption_keywords"),
    ],
)
def test_bad_scenario_file_names_file_and_field(tmp_path: Path, body: str, needle: str):
    (tmp_path / "bad.yaml").write_text(body, encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenarios(tmp_path)
    assert "bad.yaml" in str(err.value)
    assert needle in str(err.value)


def test_good_minimal_file_and_missing_dir(tmp_path: Path):
    (tmp_path / "mini.yaml").write_text(GOOD_YAML.format(id="mini"), encoding="utf-8")
    assert load_scenarios(tmp_path)["mini"].interruption_mode == "interrupt"
    with pytest.raises(ScenarioError, match="not found"):
        load_scenarios(tmp_path / "absent")


# ---- scripted customer ---------------------------------------------------------------------


def _scenario(sid: str):
    return get_scenario(SCENARIOS, sid)


async def _talk(llm: ScriptedCustomerLLM, trainee_lines: list[str]) -> list[str]:
    """Run a conversation; returns the customer's replies (one per trainee line)."""
    msgs = [ChatMessage("assistant", llm.scenario.greeting)]
    replies = []
    for line in trainee_lines:
        msgs.append(ChatMessage("user", line))
        chunks = [c async for c in llm.stream_reply(list(msgs), llm.scenario.language)]
        assert all(chunks), "no empty chunks"
        reply = "".join(chunks)
        replies.append(reply)
        msgs.append(ChatMessage("assistant", reply))
    return replies


async def test_scripted_en_walks_objections_and_buys():
    sc = _scenario("skincare-sensitive-en")
    obj = sc.objections
    replies = await _talk(
        ScriptedCustomerLLM(sc),
        [
            "Welcome to the stream everyone!",
            "It's made with CERAMIDES and centella.",
            "It is completely fragrance-free.",
            "Do a patch test behind your ear first.",
            "Today it's $19.99 and you can stack a coupon.",
            "We have 7-day returns and free return shipping.",
            "Thank you!",
        ],
    )
    assert replies[0] == obj[0].question
    for i in range(1, 5):  # reaction to objection i-1, then the next question
        assert replies[i] == f"{obj[i - 1].satisfied_reply} {obj[i].question}"
    assert replies[5] == f"{obj[4].satisfied_reply} {sc.closing.buy}"
    assert replies[6] == "I've already placed my order, thanks!"


async def test_scripted_zh_substring_triggers_and_buys():
    sc = _scenario("skincare-sensitive-zh")
    obj = sc.objections
    replies = await _talk(
        ScriptedCustomerLLM(sc),
        ["欢迎来到直播间", "这款主打神经酰胺修护", "我们 无香 精", "可以先在耳后测试", "今天到手109元", "支持七天无理由退货"],
    )
    assert replies[0] == obj[0].question
    assert replies[1] == obj[0].satisfied_reply + obj[1].question
    assert replies[2] == obj[1].satisfied_reply + obj[2].question  # STT spaces are ignored
    assert replies[-1] == obj[4].satisfied_reply + sc.closing.buy


async def test_scripted_missed_answer_follow_up_then_gives_up_and_does_not_buy():
    sc = _scenario("returns-worried-en")
    obj = sc.objections
    llm = ScriptedCustomerLLM(sc)
    replies = await _talk(llm, ["Hello!", "It's a lovely cream.", "Really lovely."])
    assert replies[1] == obj[0].follow_up  # missed: press the point, don't move on
    assert replies[2].endswith(obj[1].question) and replies[2].startswith("Hmm, okay")
    # Answer the rest; the customer still leaves because one concern was never answered.
    replies = await _talk(
        llm,
        ["Hello!", "It's a lovely cream.", "Really lovely.", "Return shipping insurance is included.",
         "We are the official store, check the code.", "It ships within 48 hours, fresh stock."],
    )
    assert replies[-1].endswith(sc.closing.not_buy)


async def test_scripted_preempted_objections_and_max_turns():
    sc = _scenario("price-haggler-en")
    llm = ScriptedCustomerLLM(sc)
    # One pitch answering everything at once: customer reacts and closes.
    replies = await _talk(
        llm,
        ["Hi!", "About 30 cents a day; with the coupon it's 16.99, buy two get a free travel size, "
         "and there's price protection."],
    )
    assert replies[1].endswith(sc.closing.buy)
    # Never answering: closes with not_buy after max_turns, even mid-follow-up.
    replies = await _talk(llm, ["Hi!"] + ["Nice weather today."] * (sc.max_turns + 2))
    assert sc.closing.not_buy in replies[sc.max_turns - 1]
    assert replies[-1] == "Thanks, but I've made up my mind for now."


async def test_scripted_empty_and_garbled_input():
    sc_en, sc_zh = _scenario("skincare-sensitive-en"), _scenario("skincare-sensitive-zh")
    for text in ["", "   ", "...", "um", "uh uh"]:
        replies = await _talk(ScriptedCustomerLLM(sc_en), [text])
        assert replies == ["Sorry, I didn't catch that. Could you say it again?"]
    assert (await _talk(ScriptedCustomerLLM(sc_zh), ["嗯"]))[0].startswith("不好意思，我没听清")
    # Garbled turns don't advance the script.
    replies = await _talk(ScriptedCustomerLLM(sc_en), ["", "Hello!"])
    assert replies[1] == sc_en.objections[0].question
    # No trainee message yet: the greeting.
    llm = ScriptedCustomerLLM(sc_en)
    assert "".join([c async for c in llm.stream_reply([], "en")]) == sc_en.greeting


async def test_scripted_is_deterministic_and_chunked():
    sc = _scenario("price-haggler-zh")
    lines = ["大家好", "一天不到两块钱", "随便说说", "官方旗舰店，叠券到手109", "送旅行装"]
    a = await _talk(ScriptedCustomerLLM(sc), lines)
    b = await _talk(ScriptedCustomerLLM(sc), lines)
    assert a == b
    msgs = [ChatMessage("user", "大家好")]
    chunks = [c async for c in ScriptedCustomerLLM(sc).stream_reply(msgs, "zh")]
    assert len(chunks) >= 2 and "".join(chunks) == a[0]


def test_matching_helpers():
    sc = _scenario("skincare-sensitive-en")
    fragrance = sc.objections[1]
    assert addresses(fragrance, "It's FRAGRANCE-free")
    assert not addresses(fragrance, "it is great")
    price = sc.objections[3]
    assert addresses(price, "only $19.99 today")
    assert not addresses(sc.objections[4], "I'm 17 years old")  # "7" must start a word
    assert is_garbled("...") and is_garbled("Um.") and not is_garbled("ok")
    assert split_clauses("It is $19.99, okay? Yes.") == ["It is $19.99,", " okay?", " Yes."]
    assert split_clauses("好，那我拍一单。谢谢！") == ["好，", "那我拍一单。", "谢谢！"]


def test_scenarios_are_cached_and_reloaded_on_change(tmp_path) -> None:
    src = PACKAGED_CONFIGS / "scenarios" / "price-haggler-en.yaml"
    shutil.copy(src, tmp_path / src.name)
    first = load_scenarios(tmp_path)
    again = load_scenarios(tmp_path)
    assert again["price-haggler-en"] is first["price-haggler-en"]  # not parsed again
    text = (tmp_path / src.name).read_text(encoding="utf-8")
    (tmp_path / src.name).write_text(text + "\n# edited\n", encoding="utf-8")  # size changes
    edited = load_scenarios(tmp_path)
    assert edited["price-haggler-en"] is not first["price-haggler-en"]
    (tmp_path / src.name).unlink()
    assert load_scenarios(tmp_path) == {}


async def test_scripted_customer_without_scenario_does_not_crash() -> None:
    """A shadowed stream has no scenario: building the offline providers must still work (it
    crashed with 'NoneType' has no attribute 'language' and the streamer lost transcripts)."""
    from coach.providers.factory import build_providers
    from coach.settings import ProviderSettings

    providers = build_providers(ProviderSettings(stt="whisper", llm="scripted", tts="espeak"), None)
    try:
        assert providers.llm.language == "en"
    finally:
        await providers.aclose()
    llm = ScriptedCustomerLLM(None, language="zh-CN")
    assert llm.language == "zh"
    chunks = [c async for c in llm.stream_reply([ChatMessage("user", "你好")], "zh")]
    assert "".join(chunks).startswith("不好意思")
