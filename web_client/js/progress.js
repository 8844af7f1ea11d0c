// Trainee progress: score trend per dimension across sessions (hand-drawn SVG), before/after a
// training date, the trainee's sessions, exports. Data: GET /api/trainees/{user}/progress?split=
// (server computes series, slope, before/after means) + GET /api/sessions?user= (table rows).
import { $, clearBanner, el, fetchJSON, initPage, params, showBanner, t } from './common.js';

const LC = window.LC = { phase: 'loading', progress: null, users: [], user: null, sessions: [], errors: [] };
initPage('progress');

const DIMS = ['knowledge', 'skill', 'response', 'composure'];
const SERIES = [...DIMS, 'overall'];
const COLOURS = { knowledge: '#4e79a7', skill: '#f28e2b', response: '#59a14f', composure: '#b07aa1', overall: '#6b7385' };
const FLAT_SLOPE = 0.5; // |points per session| below this reads as "steady", not a trend
const SVG_NS = 'http://www.w3.org/2000/svg';
const enc = encodeURIComponent;

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

const fmt = (v, digits = 1) => (v === null || v === undefined || Number.isNaN(v) ? '—' : Number(v).toFixed(digits));
const signed = (v) => (v === null || v === undefined ? '—' : `${v > 0 ? '+' : ''}${Number(v).toFixed(1)}`);
const direction = (v, flat = 0) => (v === null || v === undefined ? 'flat' : v > flat ? 'up' : v < -flat ? 'down' : 'flat');

/** The ISO day of a stored record, the way coach/progress.py dates it (report date, else UTC start). */
function dayOf(record) {
  const r = record.report || {};
  if (r.date) return String(r.date).slice(0, 10);
  const ts = record.started_at ?? r.started_at;
  return typeof ts === 'number' ? new Date(ts * 1000).toISOString().slice(0, 10) : '';
}

function fail(err) {
  LC.errors.push({ reason: err.reason, detail: err.message });
  LC.phase = 'error';
  showBanner(err.reason === 'unreachable' ? 'unreachable' : 'http', { detail: err.message });
}

// ---- chart ---------------------------------------------------------------------------------

/** x axis: one slot per session, oldest first (the order the progress series use). */
function sessionAxis(progress) {
  const seen = new Map();
  for (const dim of SERIES) {
    for (const p of progress.dimensions?.[dim]?.series || []) if (!seen.has(p.session_id)) seen.set(p.session_id, p.date);
  }
  const order = new Map(LC.sessions.map((s, i) => [s.session_id, i])); // newest first from the API
  return [...seen.entries()].map(([id, date]) => ({ id, date: date || '' }))
    .sort((a, b) => (a.date === b.date ? (order.get(b.id) ?? 0) - (order.get(a.id) ?? 0) : a.date < b.date ? -1 : 1));
}

function drawChart(progress) {
  const box = $('#chart');
  const axis = sessionAxis(progress);
  if (!axis.length) { box.replaceChildren(el('p', { class: 'muted', i18n: 'session.none' })); return; }
  const W = 760; const H = 300; const m = { l: 40, r: 16, t: 28, b: 74 };
  const plotW = W - m.l - m.r; const pad = 24;
  const x = (i) => (axis.length === 1 ? m.l + plotW / 2 : m.l + pad + (i * (plotW - 2 * pad)) / (axis.length - 1));
  const y = (v) => m.t + (H - m.t - m.b) * (1 - Math.max(0, Math.min(100, v)) / 100);
  const index = new Map(axis.map((a, i) => [a.id, i]));
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': t('progress.chart') });
  for (let v = 0; v <= 100; v += 20) {
    root.append(svg('line', { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v), class: 'grid' }),
      svg('text', { x: m.l - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, String(v)));
  }
  const every = Math.ceil(axis.length / 10); // at most ~10 date labels
  const oneYear = axis[0].date.slice(0, 4) === axis[axis.length - 1].date.slice(0, 4);
  axis.forEach((a, i) => {
    if (i % every === 0 || i === axis.length - 1) {
      root.append(svg('text', { x: x(i), y: H - m.b + 16, 'text-anchor': 'middle', class: 'axis' }, (oneYear ? a.date.slice(5) : a.date) || '?'));
    }
  });
  const split = progress.split_date;
  if (split) { // dashed marker between the last session before the date and the first on/after it
    const firstAfter = axis.findIndex((a) => a.date >= split);
    const sx = firstAfter === -1 ? W - m.r : firstAfter === 0 ? m.l : (x(firstAfter - 1) + x(firstAfter)) / 2;
    root.append(svg('line', { x1: sx, x2: sx, y1: m.t, y2: H - m.b, class: 'split' }),
      svg('text', { x: sx, y: m.t - 12, class: 'split-label',
        'text-anchor': sx < m.l + 90 ? 'start' : sx > W - m.r - 90 ? 'end' : 'middle' }, `${t('progress.split_marker')} ${split}`));
  }
  for (const dim of SERIES) {
    const pts = (progress.dimensions?.[dim]?.series || []).filter((p) => p.score !== null && index.has(p.session_id));
    if (!pts.length) continue;
    const g = svg('g', { class: `line line-${dim}`, 'data-dim': dim });
    // Equal scores of different dimensions would hide each other: nudge each series sideways.
    const dx = (SERIES.indexOf(dim) - (SERIES.length - 1) / 2) * 3;
    const d = pts.map((p, k) => `${k ? 'L' : 'M'}${(x(index.get(p.session_id)) + dx).toFixed(1)} ${y(p.score).toFixed(1)}`).join(' ');
    g.append(svg('path', { d, stroke: COLOURS[dim], class: `series ${dim}` }));
    for (const p of pts) {
      const c = svg('circle', { cx: x(index.get(p.session_id)) + dx, cy: y(p.score), r: dim === 'overall' ? 2.5 : 4,
        fill: COLOURS[dim], class: 'pt', 'data-session': p.session_id, 'data-score': p.score });
      c.append(svg('title', {}, `${t(`dim.${dim}`)} · ${p.date}: ${fmt(p.score)}`));
      g.append(c);
    }
    root.append(g);
  }
  let lx = m.l; // legend
  for (const dim of SERIES) {
    const label = t(`dim.${dim}`);
    root.append(svg('rect', { x: lx, y: H - 24, width: 12, height: 12, fill: COLOURS[dim], rx: 2 }),
      svg('text', { x: lx + 16, y: H - 14, class: 'legend' }, label));
    lx += 16 + [...label].reduce((w, ch) => w + (ch.charCodeAt(0) > 255 ? 12 : 7), 0) + 18;
  }
  box.replaceChildren(root);
}

// ---- trend, before/after, sessions ----------------------------------------------------------

function drawTrends(progress) {
  $('#trends').replaceChildren(...SERIES.map((dim) => {
    const d = progress.dimensions?.[dim] || {};
    const dir = direction(d.slope, FLAT_SLOPE);
    const arrow = d.slope === null || d.slope === undefined ? '·' : { up: '▲', down: '▼', flat: '▶' }[dir];
    return el('div', { class: `trend ${dir}`, 'data-dim': dim, 'data-slope': d.slope ?? '' },
      el('div', { class: 'name' }, el('span', { class: 'swatch', style: `background:${COLOURS[dim]}` }),
        el('span', { i18n: `dim.${dim}` }), el('span', { class: `arrow ${dir}`, text: arrow })),
      d.slope === null || d.slope === undefined
        ? el('div', { class: 'muted', i18n: 'progress.few' })
        : el('div', { class: dir, i18n: 'progress.slope', vars: { v: signed(d.slope) } }),
      el('div', { class: 'muted', i18n: 'progress.mean', vars: { v: fmt(d.mean) } }));
  }));
}

function drawCompare(progress) {
  const split = progress.split_date;
  $('#compare').hidden = !split;
  $('#compare-hint').hidden = Boolean(split);
  if (!split) return;
  $('#compare tbody').replaceChildren(...SERIES.map((dim) => {
    const d = progress.dimensions?.[dim] || {};
    const cell = (mean, n) => el('td', { class: 'num', i18n: 'progress.n', vars: { mean: fmt(mean), n: n ?? 0 } });
    const dir = direction(d.delta);
    return el('tr', { 'data-dim': dim, 'data-delta': d.delta ?? '' },
      el('td', { i18n: `dim.${dim}` }), cell(d.before_mean, d.before_n), cell(d.after_mean, d.after_n),
      d.delta === null || d.delta === undefined
        ? el('td', { class: 'num delta muted', i18n: 'progress.no_compare' })
        : el('td', { class: `num delta ${dir}`, text: `${signed(d.delta)} ${{ up: '▲', down: '▼', flat: '' }[dir]}`.trim() }));
  }));
}

function drawSessions(records) {
  const rows = [...records].sort((a, b) => (b.started_at ?? 0) - (a.started_at ?? 0));
  $('#sessions tbody').replaceChildren(...rows.map((s) => {
    const r = s.report || {};
    const score = (dim) => (dim === 'overall' ? r.overall : r.scores?.[dim]?.score);
    return el('tr', { 'data-session': s.session_id },
      el('td', { text: dayOf(s) }), el('td', { text: r.scenario_title || s.scenario || '' }),
      ...['overall', ...DIMS].map((dim) => el('td', { class: `num score-${dim}`, text: fmt(score(dim), 0) })),
      el('td', {}, el('a', { href: `/static/session.html?id=${enc(s.session_id)}`, i18n: 'col.open' })));
  }));
}

function setExports(user, split) {
  const q = `user=${enc(user)}`;
  $('#export-sessions').href = `/api/export/sessions.csv?${q}`;
  $('#export-metrics').href = `/api/export/metrics.csv?${q}`;
  $('#export-json').href = `/api/trainees/${enc(user)}/progress${split ? `?split=${enc(split)}` : ''}`;
  $('#export-sessions').download = `sessions-${user}.csv`;
  $('#export-metrics').download = `metrics-${user}.csv`;
  $('#export-json').download = `progress-${user}.json`;
}

function showEmpty(key, vars = {}) {
  const box = $('#empty');
  box.dataset.i18n = key;
  box.dataset.i18nVars = JSON.stringify(vars);
  box.textContent = t(key, vars);
  box.hidden = false;
  $('#content').hidden = true;
}

// ---- loading --------------------------------------------------------------------------------

let generation = 0; // a newer selection wins over a slower older reply

async function loadTrainee() {
  const user = $('#user').value;
  const split = $('#split').value || null;
  const mine = ++generation;
  LC.phase = 'loading';
  LC.user = user || null;
  if (!user) { showEmpty('progress.no_users'); LC.phase = 'empty'; return; }
  const url = new URL(location.href); // shareable address: ?user=&split=
  url.searchParams.set('user', user);
  if (split) url.searchParams.set('split', split); else url.searchParams.delete('split');
  history.replaceState(null, '', url);
  setExports(user, split);
  let progress;
  let records;
  try {
    [progress, records] = await Promise.all([
      fetchJSON(`/api/trainees/${enc(user)}/progress${split ? `?split=${enc(split)}` : ''}`),
      fetchJSON(`/api/sessions?user=${enc(user)}&limit=500`),
    ]);
  } catch (err) {
    if (mine === generation) fail(err);
    return;
  }
  if (mine !== generation) return;
  clearBanner('http', 'unreachable');
  LC.progress = progress;
  LC.sessions = Array.isArray(records) ? records : (records?.sessions || []);
  if (!progress?.sessions) { showEmpty('progress.empty_user', { user }); LC.phase = 'empty'; return; }
  $('#empty').hidden = true;
  $('#content').hidden = false;
  drawChart(progress);
  drawTrends(progress);
  drawCompare(progress);
  drawSessions(LC.sessions);
  LC.phase = 'ready';
}

async function init() {
  let all;
  try {
    all = await fetchJSON('/api/sessions?limit=1000');
  } catch (err) { fail(err); return; }
  const records = Array.isArray(all) ? all : (all?.sessions || []);
  // Trainees with at least one practice that got going (a start refused at the mic leaves an
  // empty session behind: not a trainee to chart).
  const practised = (r) => r.kind !== 'shadow' && ((r.turns ?? r.report?.latency?.length ?? 0) > 0 || r.report?.overall != null);
  LC.users = [...new Set(records.filter(practised).map((r) => r.user).filter(Boolean))].sort();
  const wanted = params.get('user');
  const users = wanted && !LC.users.includes(wanted) ? [wanted, ...LC.users] : LC.users;
  $('#user').replaceChildren(...users.map((u) => el('option', { value: u, text: u })));
  if (wanted) $('#user').value = wanted;
  if (params.get('split')) $('#split').value = params.get('split');
  await loadTrainee();
}

$('#user').addEventListener('change', loadTrainee);
$('#split').addEventListener('change', loadTrainee);
$('#clear-split').addEventListener('click', () => { $('#split').value = ''; loadTrainee(); });
document.addEventListener('langchange', () => { if (LC.phase === 'ready') drawChart(LC.progress); });
init();
