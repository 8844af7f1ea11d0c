// Mentor page: watch + hear the streamer, send tips (ack RTT), push-to-talk whisper, alerts/metrics.
import { $, el, fmtMs, initPage, mediaErrorReason, params, persistInput, safeId, showBanner, t } from './common.js';
import { LiveSession } from './signalling.js';
import { meter, playRemote, watchStream } from './audio.js';

const LC = window.LC = {
  phase: 'idle', acks: [], tipsSent: [], alerts: [], metrics: null, errors: [], pc: null, events: [],
  whisper: false, audio: null,
};
initPage('mentor');

const QUICK = ['quick.slow', 'quick.price', 'quick.question', 'quick.energy', 'quick.close', 'quick.product'];
const roomInput = $('#room');
const nameInput = $('#name');
roomInput.value = params.get('room') || '';
persistInput(roomInput, 'lc.room');
persistInput(nameInput, 'lc.mentor');
if (!roomInput.value) roomInput.value = 'demo';

let session = null;
let micTrack = null;
let audioDetector = null;

function renderQuick() {
  $('#quick').replaceChildren(...QUICK.map((key) =>
    el('button', { type: 'button', class: 'chip', 'data-key': key, i18n: key, onclick: () => sendTip(t(key)) })));
}
renderQuick();

// ---- tips ------------------------------------------------------------------------------
async function sendTip(text) {
  text = text.trim();
  if (!text || !session) return;
  const entry = { text, tip_id: null, sent_at: performance.now(), rtt_ms: null };
  LC.tipsSent.push(entry);
  const status = el('span', { class: 'status muted', i18n: 'tip.waiting' });
  const item = el('li', { class: 'tip' }, el('span', { class: 'text', text }), ' ', status);
  $('#sent').prepend(item);
  tipEls.push({ entry, item, status });
  try {
    const reply = await session.request({ type: 'tip', text }, 'tip_sent', 5000);
    entry.tip_id = reply.tip_id;
    item.dataset.tipId = reply.tip_id;
  } catch (err) {
    entry.error = err.reason;
    item.classList.add('failed');
    status.removeAttribute('data-i18n');
    status.textContent = err.message || err.reason;
  }
}
const tipEls = []; // DOM nodes stay out of window.LC (tests read it)

function onAcked(msg) {
  LC.acks.push({ tip_id: msg.tip_id, rtt_ms: msg.rtt_ms, delivery_ms: msg.delivery_ms ?? null });
  const found = tipEls.find((x) => x.entry.tip_id === msg.tip_id);
  if (!found) return;
  found.entry.rtt_ms = msg.rtt_ms;
  found.item.classList.add('acked');
  found.status.dataset.i18n = 'tip.acked';
  found.status.dataset.i18nVars = JSON.stringify({ ms: fmtMs(msg.rtt_ms) });
  found.status.textContent = t('tip.acked', { ms: fmtMs(msg.rtt_ms) });
}

$('#tip-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = $('#tip-text');
  sendTip(input.value);
  input.value = '';
});

// ---- whisper (push to talk) ------------------------------------------------------------
function setWhisper(on) {
  if (!session || !micTrack || LC.whisper === on) return;
  LC.whisper = on;
  micTrack.enabled = on; // disabled track sends silence: the streamer hears nothing
  session.send({ type: 'whisper', on });
  const btn = $('#ptt');
  btn.classList.toggle('live', on);
  btn.dataset.i18n = on ? 'btn.whispering' : 'btn.whisper';
  btn.textContent = t(btn.dataset.i18n);
}
const ptt = $('#ptt');
ptt.addEventListener('pointerdown', (ev) => { ev.preventDefault(); setWhisper(true); });
for (const name of ['pointerup', 'pointerleave', 'pointercancel']) ptt.addEventListener(name, () => setWhisper(false));
const typing = (ev) => ['INPUT', 'TEXTAREA', 'SELECT'].includes(ev.target?.tagName);
document.addEventListener('keydown', (ev) => { if (ev.code === 'Space' && !typing(ev) && !ev.repeat) { ev.preventDefault(); setWhisper(true); } });
document.addEventListener('keyup', (ev) => { if (ev.code === 'Space' && !typing(ev)) setWhisper(false); });
window.addEventListener('blur', () => setWhisper(false));

// ---- alerts / metrics --------------------------------------------------------------------
function onAlert(msg) {
  LC.alerts.push({ kind: msg.kind, message: msg.message, severity: msg.severity });
  $('#alerts').prepend(el('li', { class: `alert ${msg.severity || 'info'}` },
    el('b', { text: msg.kind || '' }), ' ', msg.message || ''));
}
function onMetrics(msg) {
  LC.metrics = msg;
  const items = [];
  for (const [key, value] of Object.entries(msg)) {
    if (['type', 't_ns', 'session_id', 'ref'].includes(key) || typeof value === 'object') continue;
    items.push(el('dt', { text: key.replace(/_/g, ' ') }),
      el('dd', { text: typeof value === 'number' ? String(Math.round(value * 10) / 10) : String(value) }));
  }
  $('#metrics').replaceChildren(...items);
}

// ---- session -----------------------------------------------------------------------------
async function getMedia() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true } });
    micTrack = stream.getAudioTracks()[0];
    micTrack.enabled = false; // only while push-to-talk is held
    $('#ptt').disabled = false;
    return { stream };
  } catch (err) {
    // Watching works without a mic; only whisper needs it.
    const reason = mediaErrorReason(err);
    LC.errors.push({ reason, detail: err?.message });
    showBanner('whisper_off', { kind: 'warn' });
    return { stream: null };
  }
}

function buildPeer(pc, media) {
  if (media.stream) pc.addTransceiver(micTrack, { direction: 'sendrecv', streams: [media.stream] });
  else pc.addTransceiver('audio', { direction: 'sendrecv' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  const remote = new MediaStream();
  pc.addEventListener('track', async (ev) => {
    remote.addTrack(ev.track);
    if (ev.track.kind === 'video') {
      $('#remote-video').srcObject = new MediaStream([ev.track]);
      $('#remote-video').play().catch(() => {});
    } else {
      const audioStream = new MediaStream([ev.track]);
      playRemote($('#remote-audio'), audioStream);
      audioDetector?.stop();
      audioDetector = await watchStream(audioStream, { onLevel: meter($('#audio-meter')), minOnMs: 40, hangMs: 400 });
      LC.audio = audioDetector.state;
    }
  });
}

/** For tests and the status line: decoded video frames and audio energy received. */
LC.mediaStats = async () => {
  const out = { framesDecoded: 0, audioEnergy: 0, videoWidth: $('#remote-video').videoWidth, audioMaxLevel: LC.audio?.maxLevel || 0 };
  const stats = await session?.pc?.getStats();
  stats?.forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    if (s.kind === 'video') out.framesDecoded = s.framesDecoded || 0;
    if (s.kind === 'audio') out.audioEnergy = s.totalAudioEnergy || 0;
  });
  return out;
};

function onMessage(msg) {
  switch (msg.type) {
    case 'tip_acked': onAcked(msg); break;
    case 'alert': onAlert(msg); break;
    case 'metrics': onMetrics(msg); break;
    case 'whisper': break; // our own echo
    default: break;
  }
}

async function start() {
  $('#start').disabled = true;
  $('#stop').disabled = false;
  session = new LiveSession({
    role: 'mentor', room: safeId(roomInput.value, 'room'), user: safeId(nameInput.value, 'mentor'),
    token: params.get('token'), getMedia, buildPeer, onMessage, lc: LC,
  });
  LC.session = session;
  await session.run();
  $('#start').disabled = false;
  $('#stop').disabled = true;
}

function stop() {
  setWhisper(false);
  session?.stop();
  audioDetector?.stop();
  audioDetector = null;
  $('#ptt').disabled = true;
}

$('#start').addEventListener('click', () => { start(); });
$('#stop').addEventListener('click', stop);
document.addEventListener('langchange', renderQuick);
window.addEventListener('pagehide', () => session?.stop());
LC.start = start;
LC.stop = stop;
LC.sendTip = sendTip;
LC.setWhisper = setWhisper;
