// Past sessions list (GET /api/sessions).
import { $, el, fetchJSON, fmtDate, initPage, showHttpError, t } from './common.js';

const LC = window.LC = { phase: 'loading', sessions: [], errors: [] };
initPage('sessions');

const when = (record) => fmtDate(record.started_at ?? record.created_at ?? null);
const scenarioTitle = (s) => s.scenario_title ?? s.report?.scenario_title ?? s.scenario ?? '';
function turnCount(s) {
  const n = s.turns ?? s.turn_count ?? s.report?.latency?.length ?? (Array.isArray(s.turn_records) ? s.turn_records.length : null);
  return n === null || n === undefined ? '—' : String(n);
}

function render() {
  $('#sessions tbody').replaceChildren(...LC.sessions.map((s) => el('tr', { 'data-session': s.session_id },
    el('td', { text: when(s) }), el('td', { text: s.user ?? '' }),
    el('td', {}, s.kind ? el('span', { i18n: `kind.${s.kind}` }) : '',
      s.status === 'live' ? el('span', { class: 'pill live', i18n: 'sessions.live' }) : ''),
    el('td', { text: scenarioTitle(s) }), el('td', { text: s.room ?? '' }),
    el('td', { class: 'num', text: turnCount(s) }),
    el('td', {}, el('a', { href: `/static/session.html?id=${encodeURIComponent(s.session_id)}`,
      title: t('sessions.session_title', { user: s.user ?? '', scenario: scenarioTitle(s), date: when(s) }), i18n: 'col.open' })))));
}

async function load() {
  let body;
  try {
    body = await fetchJSON('/api/sessions');
  } catch (err) {
    LC.errors.push({ reason: err.reason, detail: err.message });
    LC.phase = 'error';
    showHttpError(err);
    return;
  }
  LC.sessions = Array.isArray(body) ? body : (body?.sessions || []);
  render();
  $('#empty').hidden = LC.sessions.length > 0;
  // One progress link per trainee (kept out of the rows: each row has exactly one link, to the session).
  const users = [...new Set(LC.sessions.map((s) => s.user).filter(Boolean))].sort();
  $('#trainees .links').replaceChildren(...users.flatMap((u, i) => [i ? ' · ' : '',
    el('a', { href: `/static/progress.html?user=${encodeURIComponent(u)}`, 'data-user': u, text: u })]));
  $('#trainees').hidden = users.length === 0;
  LC.phase = 'ready';
}
document.addEventListener('langchange', () => { if (LC.phase === 'ready') render(); });
load();
