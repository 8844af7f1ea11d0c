// WebAudio helpers: one AudioContext, energy detectors on MediaStreams, level meters.
let ctxPromise = null;

/** Create (once) the page's AudioContext with the detector worklet loaded. Call from a click. */
export function audioContext() {
  if (!ctxPromise) {
    ctxPromise = (async () => {
      const ctx = new AudioContext({ latencyHint: 'interactive' });
      await ctx.audioWorklet.addModule('/static/js/energy-worklet.js');
      if (ctx.state !== 'running') await ctx.resume().catch(() => {});
      return ctx;
    })();
  }
  return ctxPromise;
}

/**
 * Watch ``stream`` for speech edges. onEdge({edge, t}) gets AudioContext seconds (all detectors
 * share one clock, so differences are latencies). Returns {stop(), state}.
 */
export async function watchStream(stream, { onEdge, onLevel, ...options } = {}) {
  const ctx = await audioContext();
  const source = ctx.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(ctx, 'energy-detector', { processorOptions: options, numberOfOutputs: 1 });
  const sink = ctx.createGain();
  sink.gain.value = 0; // the graph must reach the destination to be pulled; we never play it twice
  source.connect(node).connect(sink).connect(ctx.destination);
  const state = { on: false, maxLevel: 0, level: 0 };
  node.port.onmessage = ({ data }) => {
    if (data.edge) {
      state.on = data.edge === 'start';
      onEdge?.(data);
    } else if (typeof data.level === 'number') {
      state.level = data.level;
      state.maxLevel = Math.max(state.maxLevel, data.level);
      onLevel?.(data.level);
    }
  };
  return {
    state,
    stop() { try { source.disconnect(); node.disconnect(); sink.disconnect(); } catch { /* gone */ } },
  };
}

/** Play a remote stream through an <audio> element (WebAudio only sees remote WebRTC audio then). */
export function playRemote(audioEl, stream) {
  if (audioEl.srcObject !== stream) audioEl.srcObject = stream;
  audioEl.play().catch(() => { /* autoplay blocked until a click; the Start click normally allows it */ });
}

/** Level meter element: width follows dBFS between −60 and 0. */
export function meter(el) {
  return (rms) => {
    const db = 20 * Math.log10(Math.max(rms, 1e-6));
    el.style.setProperty('--level', `${Math.max(0, Math.min(100, ((db + 60) / 60) * 100))}%`);
  };
}
