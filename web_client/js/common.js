// Shared page plumbing: header + language switch, error banners, status pill, REST helpers.
import { applyI18n, fmtDate, fmtNum, getLang, hasKey, setLang, t } from '../i18n.js';

export { t, getLang, fmtDate, fmtNum };

const NAV = [
  ['home', '/'], ['practice', '/static/practice.html'], ['stream', '/static/stream.html'],
  ['mentor', '/static/mentor.html'], ['sessions', '/static/sessions.html'],
  ['progress', '/static/progress.html'],
];

/** Build the header (links + zh/en switch) and translate the page. */
export function initPage(active) {
  const header = document.querySelector('header.top');
  if (header) {
    const links = NAV.map(([key, href]) =>
      `<a href="${href}" class="${key === active ? 'active' : ''}" data-i18n="nav.${key}"></a>`).join('');
    header.innerHTML = `<a class="brand" href="/" data-i18n="app.name"></a><nav>${links}</nav>
      <label class="lang"><span data-i18n="lang.label"></span>
        <select id="lang-switch"><option value="en">English</option><option value="zh">中文</option></select></label>`;
    const sel = header.querySelector('#lang-switch');
    sel.value = getLang();
    sel.addEventListener('change', () => setLang(sel.value));
  }
  applyI18n();
}

export const $ = (sel, root = document) => root.querySelector(sel);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'i18n') { node.dataset.i18n = v; node.textContent = t(v, attrs.vars || {}); }
    else if (k === 'vars') node.dataset.i18nVars = JSON.stringify(v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

// ---- banners ---------------------------------------------------------------------------

/** Show (or replace) the banner for ``reason``. Text re-translates on language change. */
export function showBanner(reason, { key, vars = {}, kind = 'error', detail } = {}) {
  const box = document.getElementById('banners');
  if (!box) return;
  let msgKey = key || (`err.${reason}`);
  let fullVars = { detail: detail ?? '', ...vars };
  // A reason the pages have no words for is shown as a generic error naming the code, never
  // as the raw key or the server's English sentence.
  if (!hasKey(msgKey)) { msgKey = 'err.generic'; fullVars = { ...fullVars, detail: reason }; }
  let banner = box.querySelector(`.banner[data-reason="${CSS.escape(reason)}"]`);
  if (!banner) {
    banner = el('div', { class: `banner ${kind}`, role: 'alert', 'data-reason': reason });
    banner.append(el('span', { class: 'msg' }),
      el('button', { class: 'close', 'aria-label': 'close', text: '×', onclick: () => banner.remove() }));
    box.append(banner);
  }
  banner.className = `banner ${kind}`;
  const msg = banner.querySelector('.msg');
  msg.dataset.i18n = msgKey;
  msg.dataset.i18nVars = JSON.stringify(fullVars);
  msg.textContent = t(msgKey, fullVars);
}

export function clearBanner(...reasons) {
  for (const reason of reasons) document.querySelector(`#banners .banner[data-reason="${CSS.escape(reason)}"]`)?.remove();
}

/** Banner for a failed REST call: the server's reason code in the UI language. */
export function showHttpError(err) {
  const reason = err?.reason || 'http';
  if (reason === 'unreachable') { showBanner('unreachable'); return; }
  if (hasKey(`err.${reason}`)) { showBanner(reason, { detail: '' }); return; }
  showBanner('http', { detail: reason });
}

// ---- alerts ----------------------------------------------------------------------------
const ALERT_NUMBERS = { silence_s: 0, threshold_s: 0, rate: 0, threshold: 0, waited_s: 0, fps: 0, for_s: 0, loss_pct: 1 };

/** An alert (kind + parameters from the server) worded in the UI language, numbers formatted. */
export function alertText(a) {
  const vars = { ...a };
  for (const [k, digits] of Object.entries(ALERT_NUMBERS)) if (k in a) vars[k] = fmtNum(a[k], digits);
  if (a.unit) vars.unit = t(`unit.${a.unit}`);
  if (Array.isArray(a.keywords)) vars.keywords = a.keywords.join(getLang() === 'zh' ? '、' : ', ');
  const key = `alert.${a.kind}`;
  return t(key) === key ? t('alert.other', { kind: a.kind }) : t(key, vars);
}

// ---- status pill -----------------------------------------------------------------------

export function setStatus(state, vars = {}) {
  const pill = document.getElementById('conn-status');
  if (!pill) return;
  pill.dataset.state = state;
  pill.dataset.i18n = `status.${state}`;
  pill.dataset.i18nVars = JSON.stringify(vars);
  pill.textContent = t(`status.${state}`, vars);
}

// ---- REST ------------------------------------------------------------------------------

export class HttpError extends Error {
  constructor(reason, message, status) { super(message); this.reason = reason; this.status = status; }
}

// Production mode: pages are opened from a join link (?token=…). The token is kept for this tab, so
// the REST pages it links to (sessions, reports, progress) are authorized too; it goes in a header,
// never into another URL.
const TOKEN_KEY = 'livecoach.token';
const linkToken = new URLSearchParams(location.search).get('token');
if (linkToken) sessionStorage.setItem(TOKEN_KEY, linkToken);

/** The join token this tab was opened with (or null in dev mode). */
export function authToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** ``url`` with the tab's token as ?token= — only for what cannot send a header (<audio src>). */
export function withToken(url) {
  const token = authToken();
  if (!token) return url;
  return `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
}

/** fetch JSON; network failure → HttpError('unreachable'), non-2xx → HttpError(server reason). */
export async function fetchJSON(url, options = {}) {
  let resp;
  const token = authToken();
  const auth = token && url.startsWith('/api/') ? { Authorization: `Bearer ${token}` } : {};
  try {
    resp = await fetch(url, { ...options, headers: { 'Content-Type': 'application/json', ...auth, ...(options.headers || {}) } });
  } catch (err) {
    throw new HttpError('unreachable', String(err), 0);
  }
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON */ }
  if (!resp.ok) {
    const reason = body?.reason || body?.error || `http_${resp.status}`;
    throw new HttpError(reason, body?.message || `${resp.status} ${resp.statusText}`, resp.status);
  }
  return body;
}

/** Dev/embedded mode: ask the server for a join token. */
export async function devToken(room, role, user) {
  const body = await fetchJSON('/api/dev/token', { method: 'POST', body: JSON.stringify({ room, role, user }) });
  if (!body?.token) throw new HttpError('bad_token', 'no token in reply', 200);
  return body.token;
}

/** Room/user ids must match ^[A-Za-z0-9_.:@-]{1,64}$ (server rule): derive one from a display name. */
export function safeId(text, prefix) {
  const slug = String(text || '').trim().replace(/\s+/g, '-').replace(/[^A-Za-z0-9_.:@-]/g, '').slice(0, 40);
  return slug || `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
}

export function randomId(prefix) { return `${prefix}-${Math.random().toString(36).slice(2, 10)}`; }

export const params = new URLSearchParams(location.search);

/** Remember simple form values between visits. */
export function persistInput(input, key) {
  try {
    const saved = localStorage.getItem(key);
    if (saved && !input.value) input.value = saved;
    input.addEventListener('change', () => localStorage.setItem(key, input.value));
  } catch { /* storage disabled */ }
}

export function fmtMs(v) { return v === null || v === undefined || Number.isNaN(v) ? '—' : String(Math.round(v)); }

/** The claims of a join token (``base64url(json).signature``), or null. Read only to tell the
 * user early that a link is for another page; the server still checks everything. */
export function tokenClaims(token) {
  try {
    const part = String(token).split('.')[0].replace(/-/g, '+').replace(/_/g, '/');
    const json = new TextDecoder().decode(Uint8Array.from(atob(part + '='.repeat((4 - (part.length % 4)) % 4)), (c) => c.charCodeAt(0)));
    const claims = JSON.parse(json);
    return claims && typeof claims === 'object' ? claims : null;
  } catch { return null; }
}

/** Map getUserMedia failures onto banner reasons. */
export function mediaErrorReason(err) {
  const name = err?.name || '';
  if (name === 'NotAllowedError' || name === 'SecurityError' || name === 'PermissionDeniedError') return 'mic_denied';
  if (name === 'NotFoundError' || name === 'OverconstrainedError' || name === 'DevicesNotFoundError') return 'no_device';
  return 'media';
}
