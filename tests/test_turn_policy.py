"""coach/turn_policy.py: every mode and edge, table-driven, no clock, no I/O."""

from __future__ import annotations

import pytest

from coach import turn_policy as tp
from coach.turns import TRANSITIONS, TurnState

L, U, T, S, I = (TurnState.LISTENING, TurnState.USER_SPEAKING, TurnState.THINKING,
                 TurnState.SPEAKING, TurnState.INTERRUPTED)
MODES = {"interrupt": tp.InterruptMode(), "ignore": tp.IgnoreMode(), "append": tp.AppendMode(),
         "keywords": tp.KeywordsMode(["hold on", "等一下"])}


def run(mode: str, events: list[tp.Event], start: TurnState = L) -> tuple[tp.PolicyState, list[list[str]]]:
    """Feed events; returns the final state and, per event, the names of the effects."""
    state = tp.PolicyState(phase=start)
    out = []
    for ev in events:
        before = state.phase
        state, fx = tp.step(state, ev, MODES[mode])
        for f in fx:  # every state change the policy asks for is a legal transition
            if isinstance(f, tp.SetState):
                assert f.state in TRANSITIONS[before], (before, f.state)
                before = f.state
        out.append([type(f).__name__ + (f"({f.state.value})" if isinstance(f, tp.SetState) else "") for f in fx])
    return state, out


CASES = [
    # name, mode, start, events, final phase, effects of the last event
    ("complete at the first pause", "interrupt", L,
     [tp.SpeechStart(), tp.Pause(), tp.Speculated(1, True)], T, ["CommitTurn", "SetState(thinking)"]),
    ("incomplete pause waits", "interrupt", L,
     [tp.SpeechStart(), tp.Pause(), tp.Speculated(1, False)], U, []),
    ("incomplete then max silence commits", "interrupt", L,
     [tp.SpeechStart(), tp.Pause(), tp.Speculated(1, False), tp.SpeechEnd()], T,
     ["CommitTurn", "SetState(thinking)"]),
    ("resume after a pause wastes the speculation", "interrupt", L,
     [tp.SpeechStart(), tp.Pause(), tp.Resume()], U, ["DropSpeculation"]),
    ("a stale speculation is ignored", "interrupt", L,
     [tp.SpeechStart(), tp.Pause(), tp.Resume(), tp.Pause(), tp.Speculated(1, True)], U, []),
    ("second pause speculates again", "interrupt", L,
     [tp.SpeechStart(), tp.Pause(), tp.Resume(), tp.Pause(), tp.Speculated(2, True)], T,
     ["CommitTurn", "SetState(thinking)"]),
    ("speech during THINKING merges into the turn", "interrupt", T,
     [tp.SpeechStart()], U, ["MergeIntoTurn", "SetState(user_speaking)"]),
    ("empty transcript: back to listening", "interrupt", T, [tp.TurnEmpty()], L, ["SetState(listening)"]),
    ("reply audible: speaking", "interrupt", T, [tp.ReplyAudible()], S, ["SetState(speaking)"]),
    ("reply done: listening", "interrupt", S, [tp.ReplyDone()], L, ["SetState(listening)"]),
    ("reply done while the trainee talks", "interrupt", S, [tp.ReplyDone(trainee_talking=True)], U,
     ["SetState(listening)", "SetState(user_speaking)"]),
    # barge-in: the output stops at the onset, the words decide
    ("onset during SPEAKING stops the output", "interrupt", S,
     [tp.SpeechStart()], I, ["StopOutput", "SetState(interrupted)"]),
    ("echo-guarded onset does not stop it", "interrupt", S, [tp.SpeechStart(echo_guarded=True)], S, []),
    ("words at the pause are resolved", "interrupt", S,
     [tp.SpeechStart(), tp.Pause(duration_ms=600)], I, ["ResolveOverlap"]),
    ("real interruption at a pause: the trainee's turn goes on to its own end", "interrupt", S,
     [tp.SpeechStart(), tp.Pause(duration_ms=600), tp.OverlapHeard(tp.Overlap.INTERRUPT)], U,
     ["CutReply", "SetState(user_speaking)", "AdoptOverlap"]),
    ("... and ends when its words are complete", "interrupt", S,
     [tp.SpeechStart(), tp.Pause(duration_ms=600), tp.OverlapHeard(tp.Overlap.INTERRUPT), tp.Speculated(1, True)],
     T, ["CommitTurn", "SetState(thinking)"]),
    ("real interruption decided while talking again: no adoption", "interrupt", S,
     [tp.SpeechStart(), tp.Pause(duration_ms=600), tp.Resume(), tp.OverlapHeard(tp.Overlap.INTERRUPT)], U,
     ["CutReply", "SetState(user_speaking)"]),
    ("real interruption after the utterance ended: its words are the turn", "interrupt", S,
     [tp.SpeechStart(), tp.Pause(duration_ms=600), tp.SpeechEnd(600), tp.OverlapHeard(tp.Overlap.INTERRUPT)], T,
     ["CutReply", "SetState(thinking)"]),
    ("cough during SPEAKING resumes (false interruption)", "interrupt", S,
     [tp.SpeechStart(), tp.Pause(duration_ms=300), tp.OverlapHeard(tp.Overlap.RESUME)], S,
     ["ResumeOutput", "SetState(speaking)"]),
    ("click shorter than the barge minimum resumes without STT", "interrupt", S,
     [tp.SpeechStart(), tp.Pause(duration_ms=100)], S, ["ResumeOutput", "SetState(speaking)"]),
    ("a click that turns into words stops the output again", "interrupt", S,
     [tp.SpeechStart(), tp.Pause(duration_ms=100), tp.Resume()], I, ["StopOutput", "SetState(interrupted)"]),
    ("a filler followed by words stops it again", "interrupt", S,
     [tp.SpeechStart(), tp.Pause(duration_ms=400), tp.OverlapHeard(tp.Overlap.RESUME), tp.Resume(),
      tp.Pause(duration_ms=900), tp.OverlapHeard(tp.Overlap.INTERRUPT)], U,
     ["CutReply", "SetState(user_speaking)", "AdoptOverlap"]),
    ("its later utterance end is nothing", "interrupt", S,
     [tp.SpeechStart(), tp.Pause(duration_ms=100), tp.SpeechEnd(duration_ms=100)], S, []),
    ("no decision by the timeout: resume", "interrupt", S, [tp.SpeechStart(), tp.BargeTimeout()], S,
     ["ResumeOutput", "SetState(speaking)"]),
    ("timeout while transcribing waits for the words", "interrupt", S,
     [tp.SpeechStart(), tp.Pause(duration_ms=600), tp.BargeTimeout()], I, []),
    ("resume after false interruption, then the reply ends", "interrupt", S,
     [tp.SpeechStart(), tp.Pause(duration_ms=300), tp.OverlapHeard(tp.Overlap.RESUME), tp.SpeechEnd(300),
      tp.ReplyDone()], L, ["SetState(listening)"]),
    # other modes never stop at the onset
    ("ignore: overlap is dropped", "ignore", S,
     [tp.SpeechStart(), tp.Pause(duration_ms=900), tp.SpeechEnd(duration_ms=900)], S, []),
    ("append: words are queued", "append", S,
     [tp.SpeechStart(), tp.SpeechEnd(duration_ms=900), tp.OverlapHeard(tp.Overlap.APPEND)], S, ["QueueTurn"]),
    ("append: the queued turn starts after the reply", "append", S,
     [tp.SpeechStart(), tp.SpeechEnd(duration_ms=900), tp.OverlapHeard(tp.Overlap.APPEND), tp.ReplyDone()], T,
     ["StartQueuedTurn", "SetState(thinking)"]),
    ("keywords: no keyword, nothing", "keywords", S,
     [tp.SpeechStart(), tp.SpeechEnd(duration_ms=900), tp.OverlapHeard(tp.Overlap.NOTHING)], S, []),
    ("keywords: keyword cuts the reply", "keywords", S,
     [tp.SpeechStart(), tp.SpeechEnd(duration_ms=900), tp.OverlapHeard(tp.Overlap.INTERRUPT)], T,
     ["StopOutput", "CutReply", "SetState(thinking)"]),
    ("keywords: a short overlap is not transcribed", "keywords", S,
     [tp.SpeechStart(), tp.SpeechEnd(duration_ms=100)], S, []),
]


@pytest.mark.parametrize("name,mode,start,events,final,last", CASES, ids=[c[0] for c in CASES])
def test_policy_table(name: str, mode: str, start: TurnState, events: list[tp.Event], final: TurnState,
                      last: list[str]) -> None:
    state, effects = run(mode, events, start)
    assert state.phase == final
    assert effects[-1] == last


def test_overlap_click_during_reply_is_not_a_turn() -> None:
    """Ignore mode: an utterance that began during the reply and ended after it, too short."""
    state, effects = run("ignore", [tp.SpeechStart(), tp.ReplyDone(trainee_talking=True),
                                    tp.SpeechEnd(duration_ms=1200)], S)
    assert state.phase == T and effects[-1] == ["CommitTurn", "SetState(thinking)"]


@pytest.mark.parametrize("text,lang,verdict", [
    ("Hi, does this face cream suit sensitive skin?", "en", tp.Verdict.COMPLETE),
    ("This cream is made for...", "en", tp.Verdict.INCOMPLETE),
    ("This cream is made for a...", "en", tp.Verdict.INCOMPLETE),
    ("This cream is made for", "en", tp.Verdict.INCOMPLETE),
    ("This cream is made for.", "en", tp.Verdict.INCOMPLETE),
    ("This cream is made for people with sensitive skin is not right", "en", tp.Verdict.UNKNOWN),
    ("I'll take two.", "en", tp.Verdict.COMPLETE),
    ("这款面霜是专门给", "zh", tp.Verdict.INCOMPLETE),
    ("这款面霜适合敏感肌吗", "zh", tp.Verdict.COMPLETE),
    ("多少钱？", "zh", tp.Verdict.COMPLETE),
    ("只看面眶", "zh", tp.Verdict.UNKNOWN),
    ("", "en", tp.Verdict.UNKNOWN),
])
def test_text_verdict(text: str, lang: str, verdict: tp.Verdict) -> None:
    assert tp.text_verdict(text, lang) == verdict


@pytest.mark.parametrize("text,filler", [
    ("Ah!", True), ("Hmm...", True), ("嗯", True), ("嗯嗯。", True), ("", True), ("Uh, um.", True),
    ("Wait, sorry.", False), ("等一下", False), ("Ah, how much?", False),
])
def test_fillers_count_as_nothing_said(text: str, filler: bool) -> None:
    assert tp.is_filler(text, "en") is filler
    assert (tp.InterruptMode().on_text(text, "en") == tp.Overlap.RESUME) is filler


def test_turn_complete_combines_words_and_model() -> None:
    assert tp.turn_complete("How much is it?", 0.01, "en", 0.5)  # words win over the model
    assert not tp.turn_complete("made for...", 0.99, "en", 0.5)
    assert tp.turn_complete("is not right", 0.88, "en", 0.5)  # undecided words: the model
    assert not tp.turn_complete("is not right", 0.3, "en", 0.5)
    assert not tp.turn_complete("is not right", None, "en", 0.5)  # no model: wait for silence


def test_keywords_mode_and_unknown_mode() -> None:
    kw = tp.interrupt_mode("keywords", ["Hold on"])
    assert kw.on_text("oh hold on please", "en") == tp.Overlap.INTERRUPT
    assert kw.on_text("I see", "en") == tp.Overlap.NOTHING
    with pytest.raises(ValueError, match="unknown interruption mode"):
        tp.interrupt_mode("shout")
