"""Optional `livecoach qa --browser`: headless Chromium clients (real WebRTC stack, WebAudio timing).

Chromium plays the prompt through its fake capture device (``--use-file-for-fake-audio-capture``
with ``%noloop``); each turn restarts the file with a fresh getUserMedia + ``replaceTrack``. An
AudioWorklet meters both the outgoing mic and the received reply (the reply stream is also
attached to a muted <audio> element: without it WebAudio hears silence). Times are converted to
wall-clock ns in the page, and aligned to the server's perf clock through GET /api/clock.

Limits: the capture file is a browser-wide flag, so only the first --prompt is used, and
--barge-in is not supported here. Run under ``unshare -n`` (loopback-only namespace) to keep
Chromium's candidates on 127.0.0.1; (Chromium is started in a private network namespace with only lo).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import aiohttp

from qa.config import QaConfig
from qa.measure import ClockAlignment, ms_between, summarize_run
from qa.results import SessionResult, TurnResult, join_server_turns
from qa.server_api import Progress, collect_server_turns, get_token, measure_clock

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

WORKLET = """
class QaMeter extends AudioWorkletProcessor {
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    let s = 0;
    if (ch) { for (let i = 0; i < ch.length; i++) s += ch[i] * ch[i]; s /= ch.length; }
    this.port.postMessage({t: currentTime, db: s > 1e-12 ? 10 * Math.log10(s) : -120});
    return true;
  }
}
registerProcessor('qa-meter', QaMeter);
"""

PAGE_JS = r"""
(() => {
const QA = window.QA = {rx: [], tx: [], firstRx: null, errors: []};
const sleep = ms => new Promise(r => setTimeout(r, ms));
const wall = t => performance.timeOrigin + t;
let ctx, pc, ws, sender, micTrack, opts, msgs = [];

function meter(stream, arr, onDb) {
  const src = ctx.createMediaStreamSource(stream);
  if (arr === QA.tx) { if (QA.txSrc) QA.txSrc.disconnect(); QA.txSrc = src; }
  const node = new AudioWorkletNode(ctx, 'qa-meter');
  node.port.onmessage = e => {
    const ts = ctx.getOutputTimestamp();
    const pt = ts.performanceTime + (e.data.t - ts.contextTime) * 1000;
    arr.push([pt, e.data.db > onDb]);
    if (arr.length > 30000) arr.splice(0, 10000);
  };
  const mute = ctx.createGain(); mute.gain.value = 0;
  src.connect(node); node.connect(mute); mute.connect(ctx.destination);
}
function waitMsg(type) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no ' + type + ' from server')), 10000);
    const check = () => {
      const i = msgs.findIndex(m => m.type === type || m.type === 'error');
      if (i < 0) return setTimeout(check, 5);
      clearTimeout(t); const m = msgs.splice(i, 1)[0];
      m.type === 'error' ? reject(new Error(m.reason + ': ' + m.message)) : resolve(m);
    };
    check();
  });
}
// Edges over a meter log: onset = first voiced block at/after `from`; offset = start of a quiet run >= holdMs.
function onsetAfter(arr, from) { for (const [t, v] of arr) if (t >= from && v) return t; return null; }
function offsetAfter(arr, from, holdMs) {
  let quiet = null, seen = false;
  for (const [t, v] of arr) {
    if (t < from) continue;
    if (v) { seen = true; quiet = null; continue; }
    if (!seen) continue;
    if (quiet === null) quiet = t;
    if (t - quiet >= holdMs) return quiet;
  }
  return null;
}
async function until(fn, timeoutMs) {
  const end = performance.now() + timeoutMs;
  for (;;) { const v = fn(); if (v !== null && v !== undefined) return v; if (performance.now() > end) return null; await sleep(5); }
}

window.qaStart = async (o) => {
  opts = o;
  const t0 = performance.now();
  ctx = new AudioContext();
  await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([o.worklet], {type: 'application/javascript'})));
  ws = new WebSocket(o.ws);
  ws.onmessage = e => msgs.push(JSON.parse(e.data));
  await new Promise((res, rej) => { ws.onopen = res; ws.onerror = () => rej(new Error('websocket failed')); });
  const joinMsg = {type: 'join', token: o.token};
  if (o.scenario) joinMsg.scenario = o.scenario;
  if (o.lang) joinMsg.lang = o.lang;
  ws.send(JSON.stringify(joinMsg));
  const joined = await waitMsg('joined');
  pc = new RTCPeerConnection({iceServers: []});
  const tr = pc.addTransceiver('audio', {direction: 'sendrecv'});  // no track yet: the file starts per turn
  sender = tr.sender;
  const audioEl = document.createElement('audio'); audioEl.muted = true; audioEl.autoplay = true;
  document.body.appendChild(audioEl);
  pc.ontrack = e => {
    const stream = e.streams[0] || new MediaStream([e.track]);
    audioEl.srcObject = stream;
    meter(stream, QA.rx, o.onDb);
  };
  await pc.setLocalDescription(await pc.createOffer());
  await until(() => pc.iceGatheringState === 'complete' ? true : null, 3000);
  ws.send(JSON.stringify({type: 'offer', sdp: pc.localDescription.sdp}));
  const answer = await waitMsg('answer');
  await pc.setRemoteDescription({type: 'answer', sdp: answer.sdp});
  const ok = await until(() => pc.connectionState === 'connected' ? true : null, 10000);
  if (!ok) throw new Error('peer state ' + pc.connectionState);
  const first = await until(() => QA.rx.length ? QA.rx[0][0] : null, 10000);
  return {session_id: joined.session_id, connect_ms: first === null ? null : first - t0};
};

window.qaSettle = async (greetWaitMs, settleMs, timeoutMs) => {
  const start = performance.now();
  const on = await until(() => onsetAfter(QA.rx, start), greetWaitMs);
  if (on === null) return false;
  await until(() => offsetAfter(QA.rx, on, settleMs), timeoutMs);
  return true;
};

window.qaTurn = async (settleMs, replyTimeoutMs) => {
  if (micTrack) micTrack.stop();
  const stream = await navigator.mediaDevices.getUserMedia(
    {audio: {echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
  micTrack = stream.getAudioTracks()[0];
  QA.tx = [];  // a fresh log per turn; the previous meter is disconnected in meter()
  meter(stream, QA.tx, opts.onDb);
  await sender.replaceTrack(micTrack);
  const t0 = performance.now();
  const txOn = await until(() => onsetAfter(QA.tx, t0), 5000);
  if (txOn === null) return {error: 'prompt never played (fake capture)'};
  const txOff = await until(() => offsetAfter(QA.tx, txOn, 600), 30000);
  if (txOff === null) return {error: 'prompt never ended'};
  const heard = await until(() => onsetAfter(QA.rx, txOff), replyTimeoutMs);
  if (heard === null) return {error: 'no reply audio within ' + replyTimeoutMs / 1000 + ' s of speech end', speech_end: wall(txOff)};
  const end = await until(() => offsetAfter(QA.rx, heard, settleMs), replyTimeoutMs * 2);
  const st = await pc.getStats();
  let lost = 0, conceal = 0;
  st.forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'audio') { lost = s.packetsLost || 0; conceal = s.concealmentEvents || 0; } });
  return {speech_end: wall(txOff), heard: wall(heard), reply_end: end === null ? null : wall(end),
          packets_lost: lost, concealment_events: conceal};
};

window.qaClose = async () => {
  try { ws && ws.send(JSON.stringify({type: 'leave'})); } catch (e) {}
  if (micTrack) micTrack.stop();
  if (pc) pc.close();
  if (ws) ws.close();
  if (ctx) await ctx.close();
};
})();
"""


def _ns(ms: float | None) -> int | None:
    return None if ms is None else int(ms * 1e6)


async def _browser_session(browser: Any, cfg: QaConfig, index: int, run_id: str, http: aiohttp.ClientSession,
                           say: Progress) -> SessionResult:
    room = f"{cfg.room_prefix}qa-{run_id}-b{index}"
    res = SessionResult(session=index, room=room, user=f"qa-{run_id}-b{index}")
    context = await browser.new_context()
    try:
        page = await context.new_page()
        res.token = await get_token(http, cfg.url, cfg.secret, room, res.user)
        await page.goto(f"{cfg.url}/healthz")  # any same-origin page: a secure context for getUserMedia
        await page.evaluate(PAGE_JS)
        ws_url = "ws" + cfg.url[4:] + "/ws"
        started = await page.evaluate("o => qaStart(o)", {"ws": ws_url, "token": res.token, "scenario": cfg.scenario,
                                                           "lang": cfg.lang, "onDb": -45.0, "worklet": WORKLET})
        res.session_id = started["session_id"]
        res.connect_ms = None if started["connect_ms"] is None else round(started["connect_ms"], 1)
        say(f"browser session {index}: connected in {res.connect_ms or 0:.0f} ms")
        res.greeting = await page.evaluate("a => qaSettle(a[0], a[1], a[2])",
                                           [cfg.greet_wait_s * 1000, cfg.settle_ms, cfg.reply_timeout_s * 1000])
        lost = 0
        for turn in range(cfg.turns):
            r = await page.evaluate("a => qaTurn(a[0], a[1])", [cfg.settle_ms, cfg.reply_timeout_s * 1000])
            rec = TurnResult(session=index, turn=turn, prompt=cfg.prompts[0], error=r.get("error"), clock="wall",
                             speech_end_ns=_ns(r.get("speech_end")), heard_ns=_ns(r.get("heard")),
                             reply_end_ns=_ns(r.get("reply_end")), underruns=r.get("concealment_events", 0), holes=0)
            rec.latency_ms = ms_between(rec.heard_ns, rec.speech_end_ns)
            lost = int(r.get("packets_lost") or lost)
            res.turns.append(rec)
            say(f"browser session {index} turn {turn}: "
                + (f"ERROR {rec.error}" if rec.error else f"heard reply {rec.latency_ms or 0:.0f} ms after speech end"))
        # concealment events are cumulative per session: keep per-turn increments
        prev = 0
        for rec in res.turns:
            total = int(rec.underruns or 0)
            rec.underruns, prev = max(0, total - prev), max(prev, total)
        res.packets_lost = lost
        await page.evaluate("qaClose()")
    except Exception as exc:  # one failed browser session must not sink the run
        res.error = f"{type(exc).__name__}: {str(exc)[:300]}"
        say(f"browser session {index}: FAILED {res.error}")
    finally:
        await context.close()
    return res


async def run_browser_qa(cfg: QaConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Same output shape as runner.run_qa, measured inside headless Chromium."""
    from playwright.async_api import async_playwright

    cfg.validate()
    say = progress or (lambda _m: None)
    if cfg.barge_in:
        say("--barge-in is not supported with --browser; ignored")
    if len(cfg.prompts) > 1:
        say("--browser plays only the first --prompt (Chromium's fake capture file is browser-wide)")
    prompt = os.path.abspath(cfg.prompts[0])
    run_id = uuid.uuid4().hex[:8]
    t0 = time.perf_counter()
    started = time.time()
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={prompt}%noloop",
            "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required"]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http, async_playwright() as pw:
        clock = await measure_clock(http, cfg.url)
        # Page times are wall-clock: shift server perf_ns by (server perf − our wall).
        wall_offset = clock.offset_ns + (time.perf_counter_ns() - time.time_ns())
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            stagger = cfg.ramp_s / cfg.sessions

            async def one(i: int) -> SessionResult:
                await asyncio.sleep(i * stagger)
                return await _browser_session(browser, cfg, i, run_id, http, say)

            results = list(await asyncio.gather(*(one(i) for i in range(cfg.sessions))))
        finally:
            await browser.close()
        events = await collect_server_turns(http, cfg.url, results, say)
    join_server_turns(results, events, ClockAlignment(offset_ns=wall_offset, rtt_ns=clock.rtt_ns, same_clock=False))
    turns = [t.as_dict() for r in results for t in r.turns]
    sessions = [r.as_dict() for r in results]
    return {"run_id": run_id, "client": "browser", "concurrency": cfg.sessions, "turns_per_session": cfg.turns,
            "started_at": started, "duration_s": round(time.perf_counter() - t0, 2),
            "config": {"url": cfg.url, "scenario": cfg.scenario, "prompts": cfg.prompts[:1], "ramp_s": cfg.ramp_s},
            "clock": {**clock.as_dict(), "page_clock": "wall", "wall_offset_ns": wall_offset},
            "session_results": sessions, "turns": turns, "summary": summarize_run(turns, sessions)}
