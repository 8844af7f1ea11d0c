"""Clause splitting of streamed LLM text and played-text truncation."""

from __future__ import annotations

from coach.text import ClauseSplitter, played_text, split_all


def stream(text: str, language: str, step: int = 3) -> list[str]:
    sp = ClauseSplitter(language)
    out: list[str] = []
    for i in range(0, len(text), step):
        out += sp.push(text[i : i + step])
    return out + sp.flush()


def test_english_sentences_split_as_they_stream() -> None:
    text = "Sure! It costs 3.5 dollars today. Does that work? Great; thanks"
    parts = stream(text, "en")
    assert "".join(parts) == text
    assert [p.strip() for p in parts] == ["Sure!", "It costs 3.5 dollars today.", "Does that work?", "Great;", "thanks"]


def test_english_boundary_waits_for_next_char() -> None:
    sp = ClauseSplitter("en")
    assert sp.push("It is 3.") == []  # could be 3.5
    assert sp.push("5 now. ") == ["It is 3.5 now. "]
    assert sp.flush() == []


def test_chinese_clauses_with_minimum_length() -> None:
    text = "好的，这款面霜很温和，适合敏感肌。价格多少？我想试试……可以吗"
    parts = stream(text, "zh", step=2)
    assert "".join(parts) == text
    # "好的，" is shorter than the minimum: it joins the next clause; strong enders always cut
    assert parts == ["好的，这款面霜很温和，", "适合敏感肌。", "价格多少？", "我想试试……", "可以吗"]


def test_chinese_first_clause_comes_early() -> None:
    sp = ClauseSplitter("zh")
    assert sp.push("这个价格有点贵") == []
    assert sp.push("，") == ["这个价格有点贵，"]


def test_split_all_and_empty() -> None:
    assert split_all("   ", "en") == []
    assert split_all("Hi there. Bye.", "en") == ["Hi there. ", "Bye."]


def test_played_text_whole_and_partial_segments() -> None:
    segs = [("Hello there. ", 1000.0), ("This cream is very gentle. ", 2000.0), ("Bye.", 500.0)]
    planned = "".join(s for s, _ in segs).strip()
    assert played_text(segs, 0) == ""
    assert played_text(segs, 1000) == "Hello there."
    half = played_text(segs, 2000)  # half of the second clause, cut at a word boundary
    assert half == "Hello there. This cream is"
    assert planned.startswith(half)
    assert played_text(segs, 99_999) == planned
    for ms in range(0, 3600, 70):
        assert planned.startswith(played_text(segs, ms))


def test_played_text_chinese_proportional_chars() -> None:
    segs = [("好的，", 600.0), ("这款面霜很温和。", 1600.0)]
    assert played_text(segs, 600 + 800, "zh") == "好的，这款面霜"
    assert played_text(segs, 300, "zh") == "好"


def test_english_long_sentence_splits_at_a_comma_short_one_does_not() -> None:
    sp = ClauseSplitter("en")
    assert sp.push("Yes, it is. ") == ["Yes, it is. "]  # a short phrase keeps its comma
    long = "It was tested by dermatologists on reactive skin for four weeks, "
    assert sp.push(long + "and nobody") == [long]
    assert sp.flush() == ["and nobody"]
    assert split_all("Sure, of course: happy to help.", "en") == ["Sure, of course: happy to help."]
