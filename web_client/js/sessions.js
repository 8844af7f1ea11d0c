// Past sessions list (GET /api/sessions).
import { $, el, fetchJSON, initPage, showBanner } from './common.js';

const LC = window.LC = { phase: 'loading', sessions: [], errors: [] };
initPage('sessions');

function when(record) {
  const ts = record.started_at ?? record.created_at;
  return typeof ts === 'number' ? new Date(ts * 1000).toLocaleString() : String(ts ?? '');
}

async function load() {
  let body;
  try {
    body = await fetchJSON('/api/sessions');
  } catch (err) {
    LC.errors.push({ reason: err.reason, detail: err.message });
    LC.phase = 'error';
    showBanner(err.reason === 'unreachable' ? 'unreachable' : 'http', { detail: err.message });
    return;
  }
  LC.sessions = Array.isArray(body) ? body : (body?.sessions || []);
  $('#sessions tbody').replaceChildren(...LC.sessions.map((s) => el('tr', { 'data-session': s.session_id },
    el('td', { text: when(s) }), el('td', { text: s.user ?? '' }), el('td', { text: s.kind ?? '' }),
    el('td', { text: s.scenario ?? '' }), el('td', { text: s.room ?? '' }),
    el('td', { class: 'num', text: String(s.turns ?? s.turn_count ?? (Array.isArray(s.turn_records) ? s.turn_records.length : '')) }),
    el('td', {}, el('a', { href: `/static/session.html?id=${encodeURIComponent(s.session_id)}`, i18n: 'col.open' })))));
  $('#empty').hidden = LC.sessions.length > 0;
  // One progress link per trainee (kept out of the rows: each row has exactly one link, to the session).
  const users = [...new Set(LC.sessions.map((s) => s.user).filter(Boolean))].sort();
  $('#trainees .links').replaceChildren(...users.flatMap((u, i) => [i ? ' · ' : '',
    el('a', { href: `/static/progress.html?user=${encodeURIComponent(u)}`, 'data-user': u, text: u })]));
  $('#trainees').hidden = users.length === 0;
  LC.phase = 'ready';
}
load();
