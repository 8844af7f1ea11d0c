// Mentor page: watch + hear the streamer, send tips (ack RTT), push-to-talk whisper, alerts/metrics.
import { $, alertText, clearBanner, el, fmtMs, fmtNum, initPage, mediaErrorReason, params, persistInput, safeId, showBanner, t } from './common.js';
import { LiveSession } from './signalling.js';
import { meter, playRemote, watchStream } from './audio.js';

const LC = window.LC = {
  phase: 'idle', acks: [], tipsSent: [], alerts: [], metrics: null, health: null, errors: [], pc: null, events: [],
  whisper: false, audio: null, streamer: null,
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
  if (!text) return;
  if (!session || session.stopped || !LC.streamer) {
    // Nothing to deliver to: say so rather than drop the tip silently.
    showBanner('watch_first', { key: session && !session.stopped ? 'err.no_streamer' : 'mentor.watch_first', kind: 'warn' });
    return;
  }
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
    const key = `err.${err.reason}`;
    status.dataset.i18n = t(key) === key ? 'err.generic' : key;
    status.dataset.i18nVars = JSON.stringify({ detail: err.reason });
    status.textContent = t(status.dataset.i18n, { detail: err.reason });
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

// ---- alerts / metrics / stream health (kind + parameters from the server; worded here) ----
function renderAlerts() {
  $('#alerts').replaceChildren(...LC.alerts.slice().reverse().map((a) => el('li', { class: `alert ${a.severity || 'info'}`, 'data-kind': a.kind },
    el('b', { text: t(`severity.${a.severity === 'warning' ? 'warning' : 'info'}`) }), ' ', alertText(a))));
}
function onAlert(msg) {
  const { type, ...alert } = msg; // eslint-disable-line no-unused-vars
  alert.shown_ms = Date.now(); // when it reached the page (tests compare with the server's clock)
  LC.alerts.push(alert);
  renderAlerts();
}

function row(labelKey, value, hint) {
  return [el('dt', { i18n: labelKey }), el('dd', {}, el('span', { class: 'v', text: value }),
    hint ? el('small', { class: 'muted', text: ` ${hint}` }) : null)];
}
function renderMetrics() {
  const m = LC.metrics;
  if (!m) { $('#metrics').replaceChildren(el('dd', { class: 'muted', i18n: 'metric.waiting' })); return; }
  const unit = t(`unit.${m.speech_rate_unit || 'wpm'}`);
  const items = [
    ...row('metric.speech_rate', m.speech_rate == null ? t('metric.waiting') : `${fmtNum(m.speech_rate)} ${unit}`,
      m.speech_rate_min != null ? t('metric.speech_rate_target', { min: fmtNum(m.speech_rate_min), max: fmtNum(m.speech_rate_max), unit }) : ''),
    ...row('metric.silence', `${fmtNum(m.silence_s, 1)} ${t('unit.s')}`, m.dead_air_s != null ? t('metric.silence_limit', { s: fmtNum(m.dead_air_s, 1) }) : ''),
  ];
  if ((m.keywords_used || []).length + (m.keywords_unused || []).length) {
    items.push(...row('metric.keywords_used', (m.keywords_used || []).join(', ') || t('metric.none')),
      ...row('metric.keywords_unused', (m.keywords_unused || []).join(', ') || t('metric.none')));
  }
  if (m.question_pending) items.push(...row('metric.question_pending', m.question_pending));
  items.push(...row('metric.alerts_fired', fmtNum(m.alerts_fired ?? LC.alerts.length)));
  $('#metrics').replaceChildren(...items);
}
function onMetrics(msg) { LC.metrics = msg; renderMetrics(); }

function renderHealth() {
  const h = LC.health;
  $('#health-card').hidden = !h;
  if (!h) return;
  const val = (v, digits, unitKey) => (v == null ? t('metric.none') : `${fmtNum(v, digits)} ${t(unitKey)}`);
  $('#health').replaceChildren(
    ...row('health.fps', val(h.fps, 1, 'unit.fps'), t('health.fps_limit', { v: fmtNum(h.fps_min) })),
    ...row('health.resolution', h.width ? `${h.width}×${h.height}` : t('metric.none')),
    ...row('health.bitrate', val(h.bitrate_kbps, 0, 'unit.kbps')),
    ...row('health.loss', h.loss_pct == null ? t('metric.none') : `${fmtNum(h.loss_pct, 1)} %`, t('health.loss_limit', { v: fmtNum(h.loss_max_pct) })),
    ...row('health.jitter', val(h.jitter_ms, 0, 'unit.ms')),
    ...row('health.freezes', fmtNum(h.freezes)));
}
function onHealth(msg) { LC.health = msg; renderHealth(); }

// ---- who is in the room (an empty room says so) ----------------------------------------------
function setStreamer(p) {
  LC.streamer = p;
  if (p) {
    clearBanner('empty_room', 'watch_first');
    showBanner('streamer_live', { key: 'mentor.streamer_live', vars: { user: p.user }, kind: 'info' });
  } else if (session && !session.stopped) {
    clearBanner('streamer_live');
    showBanner('empty_room', { key: 'mentor.empty', vars: { room: roomInput.value }, kind: 'warn' });
  }
}
function onJoined(joined) {
  setStreamer((joined.participants || []).find((p) => p.role === 'streamer' || p.role === 'trainee') || null);
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
    case 'stream_health': onHealth(msg); break;
    case 'participant_joined': if (msg.role === 'streamer' || msg.role === 'trainee') setStreamer(msg); break;
    case 'participant_left':
      if (msg.role === 'streamer' || msg.role === 'trainee') {
        setStreamer(null);
        showBanner('empty_room', { key: 'mentor.stream_ended', kind: 'info' });
        $('#remote-video').srcObject = null;
        LC.health = null; renderHealth();
      }
      break;
    case 'session_ended': break;
    case 'whisper': break; // our own echo
    default: break;
  }
}

async function start() {
  $('#start').disabled = true;
  $('#stop').disabled = false;
  session = new LiveSession({
    role: 'mentor', room: safeId(roomInput.value, 'room'), user: safeId(nameInput.value, 'mentor'),
    token: params.get('token'), getMedia, buildPeer, onMessage, onJoined, lc: LC,
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
  clearBanner('empty_room', 'streamer_live');
  $('#rtt').textContent = '';
}

$('#start').addEventListener('click', () => { start(); });
$('#stop').addEventListener('click', stop);
document.addEventListener('langchange', () => { renderQuick(); renderAlerts(); renderMetrics(); renderHealth(); });
renderMetrics();
window.addEventListener('pagehide', () => session?.stop());
LC.start = start;
LC.stop = stop;
LC.sendTip = sendTip;
LC.setWhisper = setWhisper;
