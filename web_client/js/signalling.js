// One live connection: token → WS join → WebRTC offer/answer, with reconnect + backoff.
// The server is the WebRTC peer; the browser always offers (non-trickle: wait for ICE gathering).
import { clearBanner, devToken, HttpError, setStatus, showBanner, t, tokenClaims } from './common.js';

const FATAL = new Set(['bad_token', 'token_expired', 'room_full', 'forbidden', 'invalid_field', 'unknown_scenario', 'wrong_role',
  'bad_scenario', 'mic_denied', 'no_device', 'media', 'no_webrtc']);
const CONNECTION_BANNERS = ['unreachable', 'connection_lost', 'server_busy', 'timeout', 'webrtc'];
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];

class SessionError extends Error {
  constructor(reason, message, extra = {}) { super(message || reason); this.reason = reason; Object.assign(this, extra); }
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
});

export class LiveSession {
  /**
   * opts: role, room, user, token (from the URL; else a dev token is fetched), join (extra join fields),
   * getMedia(): Promise (called once; the local stream survives reconnects),
   * buildPeer(pc): add transceivers, onMessage(msg), onJoined(msg), onPeer(pc), lc (window.LC),
   * onNewSession(joined, previousId): after a reconnect the server started another session.
   */
  constructor(opts) {
    this.opts = opts;
    this.lc = opts.lc;
    this.token = opts.token || null;
    this.devTokens = !opts.token;
    this.ws = null;
    this.pc = null;
    this.stopped = false;
    this.abort = new AbortController();
    this.pending = new Map(); // id → {resolve, reject}
    this.seq = 0;
    this.pingTimer = null;
  }

  setPhase(phase, vars = {}) {
    this.lc.phase = phase;
    setStatus(phase, vars);
  }

  error(reason, detail = '', vars = {}) {
    const fatal = FATAL.has(reason);
    this.lc.errors.push({ reason, detail, t: performance.now() });
    const key = reason === 'room_full' && !vars.role ? 'err.room_full_generic' : undefined;
    showBanner(reason, { key, detail, vars, kind: fatal ? 'error' : 'warn' });
  }

  /** Run until stop() or a fatal error. Resolves when the loop ends. */
  async run() {
    if (!window.RTCPeerConnection) { this.error('no_webrtc'); this.setPhase('error'); return; }
    let attempt = 0;
    while (!this.stopped) {
      let joinedOk = false;
      try {
        await this.connectOnce(() => { joinedOk = true; attempt = 0; });
      } catch (err) {
        if (this.stopped) break;
        const reason = err.reason || 'generic';
        if (reason === 'token_expired' && this.devTokens) {
          this.token = null; // fetch a fresh one next time round
        } else if (FATAL.has(reason)) {
          this.error(reason, err.message, err.vars || {});
          this.setPhase('error');
          this.teardown();
          return;
        } else {
          this.error(reason, err.message);
        }
      }
      this.teardown();
      if (this.stopped) break;
      if (joinedOk) attempt = 0;
      const delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)] * (0.8 + Math.random() * 0.4);
      attempt += 1;
      this.setPhase('reconnecting', { s: (delay / 1000).toFixed(1), n: attempt });
      await sleep(delay, this.abort.signal);
    }
    if (this.lc.phase !== 'error') this.setPhase('ended');
  }

  /** A link for another role is refused before joining: joining would take that role's place. */
  checkRole(role) {
    if (role && role !== this.opts.role) {
      throw new SessionError('wrong_role', '', { vars: { role, page: this.opts.role } });
    }
  }

  async connectOnce(onJoined) {
    if (this.token) this.checkRole(tokenClaims(this.token)?.role);
    if (!this.token) {
      this.setPhase('token');
      try {
        this.token = await devToken(this.opts.room, this.opts.role, this.opts.user);
      } catch (err) {
        throw new SessionError(err instanceof HttpError ? err.reason : 'generic', err.message);
      }
    }
    this.setPhase('connecting');
    const ws = await this.openSocket();
    const closed = new Promise((resolve) => ws.addEventListener('close', resolve, { once: true }));
    const joined = await this.request({ type: 'join', token: this.token, ...(this.opts.join || {}) }, 'joined', 10000);
    this.checkRole(joined.role);
    CONNECTION_BANNERS.forEach((r) => clearBanner(r));
    onJoined();
    const previous = this.lc.session_id ?? null;
    this.lc.joined = joined;
    this.lc.session_id = joined.session_id ?? this.lc.session_id ?? null;
    this.lc.sessionIds = [...new Set([...(this.lc.sessionIds || []), this.lc.session_id].filter(Boolean))];
    if (previous && joined.session_id && joined.session_id !== previous) this.opts.onNewSession?.(joined, previous);
    this.opts.onJoined?.(joined);
    this.setPhase('joined');

    if (!this.localMedia) this.localMedia = await this.opts.getMedia(); // throws fatal media errors
    await this.negotiate();
    this.startPings();
    await closed; // connection lost (or stop())
    if (!this.stopped) throw new SessionError('connection_lost');
  }

  openSocket() {
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    return new Promise((resolve, reject) => {
      let ws;
      try { ws = new WebSocket(url); } catch (err) { reject(new SessionError('unreachable', String(err))); return; }
      this.ws = ws;
      const fail = () => reject(new SessionError('unreachable', 'websocket did not open'));
      ws.addEventListener('error', fail, { once: true });
      ws.addEventListener('open', () => { ws.removeEventListener('error', fail); resolve(ws); }, { once: true });
      ws.addEventListener('message', (ev) => this.dispatch(ev.data));
      ws.addEventListener('close', () => {
        for (const p of this.pending.values()) p.reject(new SessionError('connection_lost', 'socket closed'));
        this.pending.clear();
      });
    });
  }

  send(msg) {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /** Send ``msg`` with an id; resolve with the reply of type ``expect`` (or reject on error). */
  request(msg, expect, timeoutMs = 10000) {
    const id = `c${++this.seq}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(id); reject(new SessionError('timeout')); }, timeoutMs);
      this.pending.set(id, {
        expect,
        resolve: (m) => { clearTimeout(timer); resolve(m); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      if (!this.send({ ...msg, id })) { clearTimeout(timer); this.pending.delete(id); reject(new SessionError('connection_lost')); }
    });
  }

  dispatch(raw) {
    let msg;
    try { msg = JSON.parse(raw); } catch { return; }
    this.lc.events.push(msg);
    if (this.lc.events.length > 500) this.lc.events.splice(0, 100);
    // Replies to a pending request: by ref, or by type for servers that do not echo ids.
    let entry = msg.ref && this.pending.get(msg.ref);
    let key = msg.ref;
    if (!entry && (msg.type === 'joined' || msg.type === 'answer' || msg.type === 'error')) {
      for (const [k, p] of this.pending) {
        if (p.expect === msg.type || msg.type === 'error') { entry = p; key = k; break; }
      }
    }
    if (entry && (msg.type === entry.expect || msg.type === 'error')) {
      this.pending.delete(key);
      if (msg.type === 'error') entry.reject(new SessionError(msg.reason || 'generic', msg.message, { vars: { role: msg.role || this.opts.role } }));
      else entry.resolve(msg);
      return;
    }
    if (msg.type === 'ice' && this.pc) {
      this.pc.addIceCandidate(msg.candidate || null).catch(() => {});
      return;
    }
    if (msg.type === 'pong') {
      if (typeof msg.t === 'number') {
        this.lc.rtt_ms = performance.now() - msg.t;
        const rtt = document.getElementById('rtt');
        if (rtt) {
          rtt.dataset.i18n = 'status.rtt';
          rtt.dataset.i18nVars = JSON.stringify({ ms: Math.round(this.lc.rtt_ms) });
          rtt.textContent = t('status.rtt', { ms: Math.round(this.lc.rtt_ms) });
        }
      }
      return;
    }
    if (msg.type === 'error') {
      this.lc.errors.push({ reason: msg.reason, detail: msg.message, t: performance.now() });
      // Worded by reason code in the UI language (the server's message is English, for logs).
      showBanner(msg.reason || 'generic', { detail: msg.reason, kind: 'warn' });
      return;
    }
    this.opts.onMessage?.(msg);
  }

  async negotiate() {
    this.setPhase('negotiating');
    const pc = new RTCPeerConnection({ iceServers: [] }); // loopback/LAN or server-provided TURN only
    this.pc = pc;
    this.lc.pc = pc;
    this.opts.buildPeer(pc, this.localMedia);
    this.opts.onPeer?.(pc);
    pc.addEventListener('connectionstatechange', () => {
      const state = pc.connectionState;
      this.lc.pcState = state;
      if (state === 'connected') { this.setPhase('connected'); clearBanner('webrtc'); }
      if (state === 'failed' && !this.stopped && this.pc === pc) {
        this.error('webrtc', 'peer connection failed');
        this.ws?.close(); // run() reconnects
      }
    });
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') { resolve(); return; }
      const timer = setTimeout(resolve, 3000); // send what we have; trickle may follow
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') { clearTimeout(timer); resolve(); }
      });
    });
    const answer = await this.request({ type: 'offer', sdp: pc.localDescription.sdp }, 'answer', 15000);
    await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
  }

  startPings() {
    clearInterval(this.pingTimer);
    const ping = () => this.send({ type: 'ping', t: performance.now() });
    ping();
    this.pingTimer = setInterval(ping, 5000);
  }

  teardown() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
    if (this.pc) { try { this.pc.close(); } catch { /* already closed */ } }
    this.pc = null;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close();
    this.ws = null;
    const rtt = document.getElementById('rtt'); // no connection, no round trip to show
    if (rtt) { rtt.removeAttribute('data-i18n'); rtt.textContent = ''; }
  }

  /** Leave politely, close everything, stop local media. */
  stop() {
    if (this.stopped) return;
    this.stopped = true;
    this.send({ type: 'leave' });
    this.abort.abort();
    this.teardown();
    for (const track of this.localMedia?.stream?.getTracks?.() || []) track.stop();
    this.setPhase('ended');
  }
}
