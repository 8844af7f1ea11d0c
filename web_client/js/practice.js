// Trainee practice page: voice session with the AI customer + browser-side latency measurement.
import { $, alertText, clearBanner, el, fetchJSON, fmtMs, getLang, initPage, mediaErrorReason, params, persistInput, randomId,
  safeId, showBanner, showHttpError, t } from './common.js';
import { LiveSession } from './signalling.js';
import { meter, playRemote, watchStream } from './audio.js';

const LC = window.LC = {
  phase: 'idle', turns: [], transcript: [], state: null, errors: [], pc: null, events: [],
  interruptions: [], bargeins: [], replies: [], session_id: null, scenario: null,
};
initPage('practice');

const scenarioSel = $('#scenario');
const nameInput = $('#name');
persistInput(nameInput, 'lc.name');
let scenarios = [];
let session = null;

// ---- scenarios -------------------------------------------------------------------------
async function loadScenarios() {
  try {
    const body = await fetchJSON('/api/scenarios');
    scenarios = Array.isArray(body) ? body : (body?.scenarios || []);
  } catch (err) {
    LC.errors.push({ reason: err.reason, detail: err.message });
    showHttpError(err);
    return;
  }
  scenarioSel.replaceChildren(...scenarios.map((s) => el('option', { value: s.id, text: `${titleOf(s)} (${s.language})` })));
  const wanted = params.get('scenario') || localStorage.getItem('lc.scenario');
  if (wanted && scenarios.some((s) => s.id === wanted)) scenarioSel.value = wanted;
  else { const mine = scenarios.find((s) => s.language === getLang()); if (mine) scenarioSel.value = mine.id; }
  showGoal();
}
const titleOf = (s) => (typeof s.title === 'string' ? s.title : (s.title?.[getLang()] || Object.values(s.title || {})[0] || s.id));
function showGoal() {
  const s = scenarios.find((x) => x.id === scenarioSel.value);
  $('#scenario-goal').textContent = s ? [s.persona, s.goal].filter(Boolean).join(' — ') : '';
}
scenarioSel.addEventListener('change', () => { localStorage.setItem('lc.scenario', scenarioSel.value); showGoal(); });

// ---- live UI ---------------------------------------------------------------------------
function setCustomerState(state) {
  LC.state = state;
  const pill = $('#customer-state');
  pill.dataset.state = state;
  pill.dataset.i18n = `state.${state}`;
  pill.textContent = t(`state.${state}`);
}

let interimLine = null; // "you are saying…": the speculative transcript at the trainee's first pause
function onInterim(msg) {
  if (msg.speaker !== 'trainee' || !msg.text) return;
  if (!interimLine) {
    const who = el('span', { class: 'who', i18n: 'speaker.trainee.hearing' });
    interimLine = el('li', { class: 'line trainee interim', 'data-testid': 'interim' }, who, el('span', { class: 'text' }));
    $('#transcript').append(interimLine);
  }
  interimLine.querySelector('.text').textContent = msg.text;
  interimLine.scrollIntoView({ block: 'nearest' });
  LC.interimShown = (LC.interimShown || 0) + 1;
}
function clearInterim() {
  interimLine?.remove();
  interimLine = null;
}

const lines = new Map(); // `${speaker}:${turn}` → {li, entry}
const interruptedTurns = new Set(); // the customer's line may arrive after the interruption
function onTranscript(msg) {
  if (msg.speaker === 'trainee' && msg.final) clearInterim(); // the committed line replaces it
  const key = msg.turn !== undefined && msg.turn !== null ? `${msg.speaker}:${msg.turn}` : null;
  let line = key && lines.get(key);
  if (line && line.entry.final && msg.final && !line.entry.text.endsWith(msg.text)) {
    line.entry.text = `${line.entry.text} ${msg.text}`.trim(); // customer replies arrive sentence by sentence
  } else if (line) {
    line.entry.text = msg.text;
  }
  if (line) {
    line.entry.final = !!msg.final;
  } else {
    const entry = { speaker: msg.speaker, text: msg.text, final: !!msg.final, turn: msg.turn ?? null };
    LC.transcript.push(entry);
    const who = el('span', { class: 'who', i18n: `speaker.${msg.speaker}` });
    const li = el('li', { class: `line ${msg.speaker}` }, who, el('span', { class: 'text' }));
    $('#transcript').append(li);
    line = { li, entry };
    if (key) lines.set(key, line);
  }
  line.li.classList.toggle('interim', !line.entry.final);
  if (msg.speaker === 'customer' && interruptedTurns.has(msg.turn)) line.li.classList.add('interrupted');
  line.li.querySelector('.text').textContent = line.entry.text;
  line.li.scrollIntoView({ block: 'nearest' });
  if (msg.speaker === 'trainee' && msg.final && msg.turn !== undefined) lastTraineeTurn = msg.turn;
  if (msg.speaker === 'trainee') turnRow(msg.turn ?? `b${LC.turns.length}`).said = line.entry.text;
  renderTurns();
}

// Per-turn rows keyed by the server's turn number.
const rows = new Map();
function turnRow(turn) {
  let row = rows.get(turn);
  if (!row) {
    row = { turn, browser_ms: null, server_ms: null, said: '', interrupted: false };
    rows.set(turn, row);
    LC.turns.push(row);
  }
  return row;
}
function renderTurns() {
  const body = $('#turns tbody');
  body.replaceChildren(...LC.turns.filter((r) => r.browser_ms !== null || r.server_ms !== null || r.said).map((r) => el('tr',
    { 'data-turn': r.turn },
    el('td', { text: String(r.turn).replace(/^b/, '') }), el('td', { class: 'said', text: r.said || '' }),
    el('td', { class: 'browser-ms num', text: fmtMs(r.browser_ms) }), el('td', { class: 'server-ms num', text: fmtMs(r.server_ms) }))));
}

function onTurn(msg) {
  const row = turnRow(msg.turn);
  if (msg.first_reply_frame_ns && msg.user_speech_end_ns) row.server_ms = (msg.first_reply_frame_ns - msg.user_speech_end_ns) / 1e6;
  if (msg.user_text) row.said = msg.user_text;
  row.interrupted = !!msg.interrupted;
  if (msg.interrupted) {
    interruptedTurns.add(msg.turn);
    lines.get(`customer:${msg.turn}`)?.li.classList.add('interrupted');
  }
  row.record = msg;
  renderTurns();
}

function onInterruption(msg) {
  LC.interruptions.push(msg);
  interruptedTurns.add(msg.turn);
  const line = lines.get(`customer:${msg.turn}`);
  line?.li.classList.add('interrupted');
  const item = el('li', { class: 'interruption', i18n: 'interrupt.item',
    vars: { turn: msg.turn, played: msg.played_text || '…', ms: Math.round(msg.flushed_ms || 0) } });
  $('#interruptions').append(item);
}

// ---- browser-side latency: end of my speech (mic detector) → first reply audio heard --------
let lastTraineeTurn = null;
let localOn = false;
let pendingEnd = null; // AudioContext time my last speech ended, not yet answered
let replyOn = false;
let bargein = null;

function onLocalEdge({ edge, t: at }) {
  if (edge === 'start') {
    localOn = true;
    pendingEnd = null;
    if (replyOn) { bargein = { onset_t: at, stop_ms: null }; LC.bargeins.push(bargein); }
  } else {
    localOn = false;
    pendingEnd = at;
    if (bargein && bargein.stop_ms === null) bargein.user_end_t = at;
  }
}

function onReplyEdge({ edge, t: at }) {
  if (edge === 'start') {
    replyOn = true;
    LC.replies.push({ start_t: at, end_t: null });
    if (pendingEnd !== null && !localOn) {
      const row = turnRow(lastTraineeTurn ?? `b${LC.turns.length}`);
      if (row.browser_ms === null) row.browser_ms = (at - pendingEnd) * 1000;
      pendingEnd = null;
      renderTurns();
    }
  } else {
    replyOn = false;
    const reply = LC.replies[LC.replies.length - 1];
    if (reply) reply.end_t = at;
    if (bargein && bargein.stop_ms === null) {
      bargein.stop_ms = (at - bargein.onset_t) * 1000;
      bargein.stop_t = at;
      $('#interruptions').append(el('li', { class: 'bargein', i18n: 'interrupt.browser', vars: { ms: Math.round(bargein.stop_ms) } }));
    }
  }
}

// ---- session ---------------------------------------------------------------------------
let remoteDetector = null;

const MIC_CONSTRAINTS = {
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 }, video: false,
};
let micDetector = null;

async function openMic() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia(MIC_CONSTRAINTS);
    LC.localStream = stream;
    micDetector?.stop();
    localOn = false;
    micDetector = await watchStream(stream, { onEdge: onLocalEdge, onLevel: meter($('#mic-meter')), minOnMs: 60, hangMs: 300 });
    return { stream };
  } catch (err) {
    throw Object.assign(new Error(err?.message || String(err)), { reason: mediaErrorReason(err) });
  }
}

const getMedia = openMic;

/** Re-acquire the microphone (device switched, track ended) without renegotiating. */
async function restartMic() {
  // Stop first: while the old capture is open Chrome shares it instead of opening the device anew.
  for (const track of LC.localStream?.getTracks() || []) track.stop();
  const media = await openMic();
  const sender = session?.pc?.getSenders().find((s) => s.track?.kind === 'audio' || s.track === null);
  await sender?.replaceTrack(media.stream.getAudioTracks()[0]);
  if (session?.localMedia) session.localMedia.stream = media.stream;
}

function buildPeer(pc, media) {
  pc.addTransceiver(media.stream.getAudioTracks()[0], { direction: 'sendrecv', streams: [media.stream] });
  pc.addEventListener('track', async (ev) => {
    const stream = ev.streams[0] || new MediaStream([ev.track]);
    playRemote($('#remote-audio'), stream);
    remoteDetector?.stop(); // a reconnect brings a new stream
    remoteDetector = await watchStream(stream, { onEdge: onReplyEdge, onLevel: meter($('#reply-meter')), minOnMs: 20, hangMs: 500 });
  });
}

function onMessage(msg) {
  switch (msg.type) {
    case 'state': setCustomerState(msg.state); break;
    case 'transcript': onTranscript(msg); break;
    case 'interim_transcript': onInterim(msg); break;
    case 'turn': onTurn(msg); break;
    case 'interruption': onInterruption(msg); break;
    case 'alert': showBanner(`alert_${msg.kind}`, { key: 'alert.text', vars: { text: alertText(msg) }, kind: 'info' }); break;
    case 'session_ended':
      LC.session_id = msg.session_id || LC.session_id;
      showEnded();
      break;
    default: break;
  }
}
LC.receive = onMessage; // the page's tests drive the live UI with server messages, no server needed

/** After a server restart the server may start another session: keep the views apart and say so. */
function onNewSession(joined, previous) {
  LC.previousSessions = [...(LC.previousSessions || []), previous];
  lines.clear();
  clearInterim();
  interruptedTurns.clear();
  LC.turns = [];
  LC.transcript = [];
  LC.interruptions = [];
  $('#transcript').replaceChildren();
  $('#interruptions').replaceChildren();
  renderTurns();
  clearBanner('connection_lost');
  showBanner('new_session', { key: 'practice.new_session', kind: 'warn' });
}

function showEnded() {
  if (!LC.session_id) return;
  const link = $('#session-link');
  link.href = `/static/session.html?id=${encodeURIComponent(LC.session_id)}`;
  $('#ended').hidden = false;
}

async function start() {
  $('#start').disabled = true;
  $('#stop').disabled = false;
  LC.scenario = scenarioSel.value || params.get('scenario') || null;
  const scenario = scenarios.find((s) => s.id === LC.scenario);
  const user = safeId(nameInput.value, 'trainee');
  session = new LiveSession({
    role: 'trainee', room: params.get('room') || randomId('practice'), user, token: params.get('token'),
    join: { ...(LC.scenario ? { scenario: LC.scenario } : {}), lang: scenario?.language || getLang() },
    getMedia, buildPeer, onMessage, lc: LC,
    onJoined: (m) => { LC.session_id = m.session_id; },
    onNewSession,
  });
  LC.session = session;
  await session.run();
  $('#start').disabled = false;
  $('#stop').disabled = true;
}

function stop() {
  session?.stop();
  micDetector?.stop();
  micDetector = null;
  remoteDetector?.stop();
  remoteDetector = null;
  showEnded();
}

$('#start').addEventListener('click', () => { start(); });
$('#stop').addEventListener('click', stop);
document.addEventListener('langchange', () => { loadScenarios(); });
window.addEventListener('pagehide', () => session?.stop());
LC.start = start;
LC.stop = stop;
LC.restartMic = restartMic;
loadScenarios();
