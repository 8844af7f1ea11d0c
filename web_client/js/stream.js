// Streamer page: publish camera + mic to the room; receive mentor tips (toasts) and whisper audio.
import { $, el, initPage, mediaErrorReason, params, persistInput, safeId, showBanner } from './common.js';
import { LiveSession } from './signalling.js';
import { meter, playRemote, watchStream } from './audio.js';

const LC = window.LC = { phase: 'idle', tips: [], errors: [], pc: null, events: [], participants: [], whisper: null };
initPage('stream');

const roomInput = $('#room');
const nameInput = $('#name');
const autoAck = $('#autoack');
roomInput.value = params.get('room') || '';
persistInput(roomInput, 'lc.room');
persistInput(nameInput, 'lc.name');
if (!roomInput.value) roomInput.value = 'demo';
autoAck.checked = params.get('autoack') === '1' || localStorage.getItem('lc.autoack') === '1';
autoAck.addEventListener('change', () => localStorage.setItem('lc.autoack', autoAck.checked ? '1' : '0'));

let session = null;
let whisperDetector = null;
const tipEls = new Map();

async function getMedia() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24 } },
    });
  } catch (err) {
    // Camera refused or missing: go on with audio only, say so.
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true } });
      showBanner('camera_denied', { kind: 'warn' });
    } catch (err2) {
      throw Object.assign(new Error(err2?.message || String(err2)), { reason: mediaErrorReason(err2) });
    }
  }
  $('#preview').srcObject = stream;
  return { stream };
}

function buildPeer(pc, media) {
  const audio = media.stream.getAudioTracks()[0];
  const video = media.stream.getVideoTracks()[0];
  pc.addTransceiver(audio, { direction: 'sendrecv', streams: [media.stream] }); // recv = mentor whisper
  if (video) pc.addTransceiver(video, { direction: 'sendonly', streams: [media.stream] });
  pc.addEventListener('track', async (ev) => {
    if (ev.track.kind !== 'audio') return;
    const stream = ev.streams[0] || new MediaStream([ev.track]);
    playRemote($('#remote-audio'), stream);
    whisperDetector?.stop();
    whisperDetector = await watchStream(stream, { onLevel: meter($('#whisper-meter')), minOnMs: 40, hangMs: 400 });
    LC.whisper = whisperDetector.state;
  });
}

function ack(tip) {
  if (tip.acked_at) return;
  tip.acked_at = performance.now();
  session?.send({ type: 'tip_ack', tip_id: tip.tip_id });
  tipEls.get(tip.tip_id)?.toast.remove();
  tipEls.get(tip.tip_id)?.logItem.classList.add('acked');
}

function onTip(msg) {
  const tip = { tip_id: msg.tip_id, text: msg.text, from: msg.from, received_at: performance.now(), acked_at: null };
  LC.tips.push(tip);
  const logItem = el('li', { class: 'tip', 'data-tip-id': msg.tip_id }, el('b', { text: `${msg.from || ''}: ` }), msg.text);
  $('#tip-log').prepend(logItem);
  const toast = el('div', { class: 'toast', role: 'status', 'data-tip-id': msg.tip_id },
    el('div', { class: 'from', text: msg.from || '' }), el('div', { class: 'text', text: msg.text }),
    el('button', { class: 'ack primary', i18n: 'btn.ack', onclick: () => ack(tip) }));
  $('#toasts').append(toast);
  tipEls.set(tip.tip_id, { toast, logItem }); // DOM nodes stay out of window.LC (tests read it)
  if (autoAck.checked) ack(tip);
  else setTimeout(() => toast.classList.add('old'), 15000); // fade, but keep until acked
}

function renderParticipants() {
  $('#participants').replaceChildren(...LC.participants.map((p) =>
    el('li', {}, el('span', { class: 'who', i18n: `speaker.${p.role}` }), ` ${p.user}`)));
}

function onMessage(msg) {
  switch (msg.type) {
    case 'tip': onTip(msg); break;
    case 'whisper':
      LC.whisperOn = !!msg.on;
      $('#whisper-meter').classList.toggle('live', LC.whisperOn);
      break;
    case 'participant_joined':
      LC.participants = LC.participants.filter((p) => p.user !== msg.user).concat([{ user: msg.user, role: msg.role }]);
      renderParticipants();
      break;
    case 'participant_left':
      LC.participants = LC.participants.filter((p) => p.user !== msg.user);
      renderParticipants();
      break;
    default: break;
  }
}

async function start() {
  $('#start').disabled = true;
  $('#stop').disabled = false;
  session = new LiveSession({
    role: 'streamer', room: safeId(roomInput.value, 'room'), user: safeId(nameInput.value, 'streamer'),
    token: params.get('token'), getMedia, buildPeer, onMessage, lc: LC,
    onJoined: (m) => { LC.participants = m.participants || []; renderParticipants(); },
  });
  LC.session = session;
  await session.run();
  $('#start').disabled = false;
  $('#stop').disabled = true;
  LC.participants = []; // off air: nobody is "in the room" with us any more
  renderParticipants();
}

function stop() {
  session?.stop();
  LC.participants = [];
  renderParticipants();
  whisperDetector?.stop();
  whisperDetector = null;
}

$('#start').addEventListener('click', () => { start(); });
$('#stop').addEventListener('click', stop);
window.addEventListener('pagehide', () => session?.stop());
LC.start = start;
LC.stop = stop;
