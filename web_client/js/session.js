// One session: transcript, per-turn latency chart (hand-drawn SVG), interruptions, report link.
import { $, el, fetchJSON, fmtDate, fmtMs, getLang, initPage, params, showBanner, showHttpError, t } from './common.js';

const LC = window.LC = { phase: 'loading', record: null, turns: [], transcript: [], interruptions: [], errors: [] };
initPage('sessions');

// The stage definition (names, order, labels) comes from the server: GET /api/turn-stages
// (coach/turn_stages.py); /turns gives each turn's stages_ms and total_ms computed by it.
const PALETTE = ['#8aa4c8', '#4e79a7', '#f28e2b', '#59a14f', '#b07aa1', '#e15759', '#76b7b2'];
let STAGES = []; // [{name, end_field, label: {en, zh}, colour}]
LC.stageDefinition = null;

function stageLabel(stage) { return stage.label[getLang()] || stage.label.en; }
const SVG_NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Stage durations (ms) of one turn, as the server computed them (stages_ms, total_ms). */
export function stagesOf(turn) {
  const given = turn.stages_ms || {};
  const out = STAGES.filter((s) => given[s.name] != null)
    .map((s) => ({ key: s.name, label: stageLabel(s), ms: given[s.name], colour: s.colour }));
  return { stages: out, total: turn.total_ms ?? null };
}

/** A round axis step giving at most 6 grid lines, and the axis top. */
function niceScale(v) {
  const step = [50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000].find((s) => v / s <= 6) || 20000;
  return { step, max: Math.max(step, Math.ceil(v / step) * step) };
}

function drawChart(turns) {
  const box = $('#chart');
  const data = turns.map((turn) => ({ turn, ...stagesOf(turn) })).filter((d) => d.total !== null);
  if (!data.length) { box.replaceChildren(el('p', { class: 'muted', i18n: 'session.none' })); return; }
  const W = 760; const H = 280; const m = { l: 56, r: 12, t: 16, b: 64 };
  const { step, max } = niceScale(Math.max(...data.map((d) => d.total)));
  const y = (ms) => m.t + (H - m.t - m.b) * (1 - ms / max);
  const slot = (W - m.l - m.r) / data.length;
  const bw = Math.min(48, slot * 0.6);
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': t('session.chart') });
  for (let v = 0; v <= max; v += step) { // grid + y labels
    root.append(svg('line', { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v), class: 'grid' }),
      svg('text', { x: m.l - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, String(Math.round(v))));
  }
  data.forEach((d, i) => {
    const x = m.l + slot * i + (slot - bw) / 2;
    let acc = 0;
    const g = svg('g', { class: 'bar', 'data-turn': d.turn.turn });
    const parts = d.stages.length ? d.stages : [{ key: 'total', label: t('stage.total'), ms: d.total, colour: '#4e79a7' }];
    for (const s of parts) {
      const rect = svg('rect', { x, width: bw, y: y(acc + s.ms), height: Math.max(0.5, y(acc) - y(acc + s.ms)),
        fill: s.colour, class: `seg seg-${s.key}` });
      rect.append(svg('title', {}, `${s.label}: ${fmtMs(s.ms)} ms`));
      g.append(rect);
      acc += s.ms;
    }
    g.append(svg('text', { x: x + bw / 2, y: y(d.total) - 4, 'text-anchor': 'middle', class: 'value' }, fmtMs(d.total)),
      svg('text', { x: x + bw / 2, y: H - m.b + 16, 'text-anchor': 'middle', class: 'axis' },
        `#${d.turn.turn}${d.turn.interrupted ? ' ✂' : ''}`));
    root.append(g);
  });
  let lx = m.l; // legend
  for (const stage of STAGES) {
    const label = stageLabel(stage);
    root.append(svg('rect', { x: lx, y: H - 22, width: 12, height: 12, fill: stage.colour }),
      svg('text', { x: lx + 16, y: H - 12, class: 'legend' }, label));
    lx += 16 + label.length * 7 + 18;
  }
  box.replaceChildren(root);
}

function drawTurns(turns) {
  $('#turns thead').replaceChildren(el('tr', {}, el('th', { i18n: 'col.turn' }),
    ...STAGES.map((s) => el('th', { 'data-stage': s.name, text: stageLabel(s) })), el('th', { i18n: 'stage.total' })));
  $('#turns tbody').replaceChildren(...turns.map((turn) => {
    const { stages, total } = stagesOf(turn);
    const ms = Object.fromEntries(stages.map((s) => [s.key, s.ms]));
    return el('tr', { 'data-turn': turn.turn }, el('td', { text: String(turn.turn) }),
      ...STAGES.map((s) => el('td', { class: 'num', 'data-stage': s.name, text: fmtMs(ms[s.name]) })),
      el('td', { class: 'num total', text: fmtMs(total) }));
  }));
}

function transcriptOf(record, turns, events, interruptions = []) {
  const cut = new Set([...turns.filter((x) => x.interrupted).map((x) => x.turn),
    ...interruptions.filter((x) => !x.false_interruption).map((x) => x.turn)]);
  const given = record.transcript;
  if (Array.isArray(given) && given.length) return given.map((x) => ({ speaker: x.speaker || x.role, text: x.text, turn: x.turn }));
  const finals = events.filter((e) => e.type === 'transcript' && e.final !== false && e.text);
  if (finals.length) { // customer replies may arrive sentence by sentence: merge per speaker+turn
    const merged = [];
    for (const e of finals) {
      const last = merged[merged.length - 1];
      if (last && last.speaker === e.speaker && last.turn === e.turn && e.turn !== undefined) last.text = `${last.text} ${e.text}`;
      else merged.push({ speaker: e.speaker, text: e.text, turn: e.turn });
    }
    for (const line of merged) line.interrupted = line.speaker === 'customer' && cut.has(line.turn);
    return merged;
  }
  const lines = [];
  for (const turn of turns) { // derive from the turn records
    if (turn.user_text) lines.push({ speaker: 'trainee', text: turn.user_text, turn: turn.turn });
    const reply = turn.reply_played_text || turn.reply_planned_text;
    if (reply) lines.push({ speaker: 'customer', text: reply, turn: turn.turn, interrupted: cut.has(turn.turn) });
  }
  return lines;
}

function drawTranscript(lines) {
  $('#transcript').replaceChildren(...lines.map((x) => el('li', { class: `line ${x.speaker}${x.interrupted ? ' interrupted' : ''}` },
    el('span', { class: 'who', i18n: x.speaker === 'trainee' ? 'speaker.trainee.other' : `speaker.${x.speaker}` }),
    el('span', { class: 'text', text: x.text || '' }),
    x.interrupted ? el('span', { class: 'cut', 'data-i18n-title': 'state.interrupted', title: t('state.interrupted'), text: '✂' }) : null)));
}

function drawInterruptions(list) {
  if (!list.length) { $('#interruptions').replaceChildren(el('li', { class: 'muted', i18n: 'session.none' })); return; }
  $('#interruptions').replaceChildren(...list.map((x) => el('li', { class: 'interruption', i18n: 'interrupt.item',
    vars: { turn: x.turn, played: x.played_text || '…', ms: Math.round(x.flushed_ms || 0) } })));
}

const asList = (body, key) => (Array.isArray(body) ? body : (body?.[key] || []));

/** The last record per turn number (a turn may be logged more than once as it fills in). */
function latestTurns(events) {
  const byTurn = new Map();
  for (const e of events) if ((e.type ?? 'turn') === 'turn' && e.turn !== undefined) byTurn.set(e.turn, e);
  return [...byTurn.values()].sort((a, b) => a.turn - b.turn);
}

async function load() {
  const id = params.get('id');
  if (!id) { showBanner('missing', { key: 'session.missing' }); LC.phase = 'error'; return; }
  $('#sid').textContent = id;
  $('#report').href = `/api/sessions/${encodeURIComponent(id)}/report.html`;
  const base = `/api/sessions/${encodeURIComponent(id)}`;
  let record;
  let turnEvents;
  let transcriptEvents = [];
  try {
    LC.stageDefinition = await fetchJSON('/api/turn-stages');
    STAGES = LC.stageDefinition.stages.map((s, i) => ({ ...s, colour: PALETTE[i % PALETTE.length] }));
    record = await fetchJSON(base);
    turnEvents = asList(await fetchJSON(`${base}/turns`), 'turns');
    try { transcriptEvents = asList(await fetchJSON(`${base}/events?type=transcript`), 'events'); } catch { /* optional */ }
  } catch (err) {
    LC.errors.push({ reason: err.reason, detail: err.message });
    LC.phase = 'error';
    showHttpError(err);
    return;
  }
  record = record?.session || record || {};
  let turns = latestTurns(turnEvents);
  if (!turns.length && Array.isArray(record.turns)) turns = record.turns;
  LC.record = record;
  LC.turns = turns;
  LC.interruptions = turnEvents.filter((e) => e.type === 'interruption');
  if (!LC.interruptions.length && Array.isArray(record.interruptions)) LC.interruptions = record.interruptions;
  LC.transcript = transcriptOf(record, turns, transcriptEvents, LC.interruptions);
  drawSummary();
  drawChart(turns);
  drawTurns(turns);
  drawTranscript(LC.transcript);
  drawInterruptions(LC.interruptions);
  drawRecording(record, base);
  try { LC.report = await fetchJSON(`${base}/report`); } catch { LC.report = null; /* the page stands without it */ }
  drawSummary();
  drawScores(LC.report);
  LC.phase = 'ready';
}

/** The recording. Practice: the stereo WAV (left trainee, right AI customer). Shadowed stream: one
 * MP4 with the camera and both voices (left streamer, right the mentor's whisper), muxed after the
 * session; until it exists (404), or if muxing failed, the camera and the WAV play together. */
function drawRecording(record, base) {
  const title = $('#recording-title');
  const audio = $('#recording');
  const video = $('#video-recording');
  const setTitle = (key) => { title.dataset.i18n = key; title.textContent = t(key); };
  setTitle(record.kind === 'shadow' ? 'session.recording.shadow' : 'session.recording.practice');
  if (record.recording) {
    audio.src = `${base}/recording`;
    $('#recording-card').hidden = false;
  }
  if (!record.video_recording) return;
  $('#recording-card').hidden = false;
  video.hidden = false;
  const separate = () => {
    LC.recordingSource = 'separate';
    setTitle('session.recording.shadow');
    audio.hidden = !record.recording;
    video.src = `${base}/video`;
    if (record.recording) playTogether(video, audio, Number(record.video_offset_s) || 0);
  };
  if (!record.av_recording) { separate(); return; }
  LC.recordingSource = 'av';
  setTitle('session.recording.shadow_av');
  audio.hidden = true; // the MP4 carries both voices (the WAV stays in the report's download link)
  video.addEventListener('error', separate, { once: true });
  video.src = `${base}/av`;
}

/** The WAV follows the video (play, pause, seek); ``offsetS``: where the video starts in the WAV. */
function playTogether(video, audio, offsetS) {
  const sync = () => {
    const want = video.currentTime + offsetS;
    if (Math.abs(audio.currentTime - want) > 0.25) audio.currentTime = want;
  };
  video.addEventListener('play', () => { sync(); audio.play().catch(() => {}); });
  video.addEventListener('pause', () => audio.pause());
  video.addEventListener('seeked', sync);
  video.addEventListener('ratechange', () => { audio.playbackRate = video.playbackRate; });
}

/** Title and summary line: who (trainee or streamer), scenario title, kind, date in the UI language. */
function drawSummary() {
  const r = LC.record || {};
  const scenario = LC.report?.scenario_title || r.scenario_title || r.scenario || '';
  const date = fmtDate(r.started_at ?? null);
  $('#sid').textContent = [r.user, scenario, date].filter(Boolean).join(' · ');
  $('#sid').title = r.session_id || params.get('id') || '';
  const subject = r.kind === 'shadow' ? 'session.subject.streamer' : 'session.subject.trainee';
  $('#summary').replaceChildren(el('span', { i18n: subject }), `: ${r.user || '—'}`,
    r.kind ? ' · ' : '', r.kind ? el('span', { i18n: `kind.${r.kind}` }) : '', r.room ? ` · ${r.room}` : '');
  $('#report').href = `/api/sessions/${encodeURIComponent(r.session_id || params.get('id'))}/report.html?lang=${getLang()}`;
}

const DIMENSIONS = ['knowledge', 'skill', 'response', 'composure'];

function drawScores(report) {
  const body = $('#scores tbody');
  body.replaceChildren();
  if (!report?.scores) return;
  const zh = getLang() === 'zh';
  for (const dim of DIMENSIONS) {
    const s = report.scores[dim];
    if (!s) continue;
    body.append(el('tr', { 'data-dim': dim },
      el('th', { i18n: `dim.${dim}` }),
      el('td', { class: 'num', text: s.score == null ? '—' : String(Math.round(s.score)) }),
      el('td', { text: (zh ? s.rationale_zh : s.rationale) || s.rationale || '' })));
  }
  if (report.overall != null) {
    body.append(el('tr', { 'data-dim': 'overall' }, el('th', { i18n: 'dim.overall' }),
      el('td', { class: 'num', text: String(Math.round(report.overall)) }), el('td', {})));
  }
  $('#scores-card').hidden = false;
}

document.addEventListener('langchange', () => {
  if (LC.phase === 'ready') { drawChart(LC.turns); drawTurns(LC.turns); drawScores(LC.report); drawSummary(); }
});
load();
