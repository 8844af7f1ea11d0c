// AudioWorklet: frame-accurate speech/silence edges from RMS energy (runs on the audio thread).
// Posts {edge:'start'|'end', t} in AudioContext seconds and {level, t} about every 50 ms.
class EnergyDetector extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions || {};
    this.minThreshold = o.minThreshold ?? 0.01; // absolute floor (−40 dBFS)
    this.floorFactor = o.floorFactor ?? 4; // threshold = max(min, noise floor × factor)
    this.minOnS = (o.minOnMs ?? 40) / 1000; // energy must last this long to count as speech
    this.hangS = (o.hangMs ?? 300) / 1000; // silence this long ends speech
    this.levelEveryS = (o.levelEveryMs ?? 50) / 1000;
    this.noiseFloor = 0.001;
    this.on = false;
    this.candidate = null; // time energy rose above threshold
    this.lastVoice = 0;
    this.peak = 0;
    this.lastLevel = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    const n = channel ? channel.length : 128;
    const t0 = currentTime; // start of this render quantum
    const t1 = t0 + n / sampleRate;
    let sum = 0;
    if (channel) for (let i = 0; i < n; i++) sum += channel[i] * channel[i];
    const rms = Math.sqrt(sum / n);
    const threshold = Math.max(this.minThreshold, this.noiseFloor * this.floorFactor);
    if (rms >= threshold) {
      if (this.candidate === null) this.candidate = t0;
      this.lastVoice = t1;
      if (!this.on && t1 - this.candidate >= this.minOnS) {
        this.on = true;
        this.port.postMessage({ edge: 'start', t: this.candidate });
      }
    } else {
      if (!this.on) this.candidate = null;
      // Track the noise floor only in silence: fast down, slow up.
      this.noiseFloor = rms < this.noiseFloor ? rms * 0.5 + this.noiseFloor * 0.5 : this.noiseFloor * 0.999 + rms * 0.001;
      this.noiseFloor = Math.max(this.noiseFloor, 1e-5);
      if (this.on && t1 - this.lastVoice >= this.hangS) {
        this.on = false;
        this.candidate = null;
        this.port.postMessage({ edge: 'end', t: this.lastVoice });
      }
    }
    this.peak = Math.max(this.peak, rms);
    if (t1 - this.lastLevel >= this.levelEveryS) {
      this.port.postMessage({ level: this.peak, t: t1 });
      this.peak = 0;
      this.lastLevel = t1;
    }
    return true; // keep running even when the input goes quiet
  }
}

registerProcessor('energy-detector', EnergyDetector);
