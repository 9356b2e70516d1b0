// Audio for the realtime socket: the microphone as 100 ms frames of pcm16 at 24 kHz, and the
// spoken replies played through a small jitter buffer that knows how much of each reply was
// heard (what conversation.item.truncate needs when the user speaks over it).

export const PCM_RATE = 24000;
const FRAME_SAMPLES = PCM_RATE / 10; // 100 ms
// A reply starts this far ahead of now, so deltas arriving a little late still play on
// without a gap; after an underrun the next delta waits as long again.
const JITTER_SECONDS = 0.12;
const SILENT_DB = -60; // the level meter's floor

const worklets = new WeakMap(); // AudioContext -> the promise of its loaded worklet module

export function pcm16Base64(samples) {
  const bytes = new Uint8Array(samples.length * 2);
  const view = new DataView(bytes.buffer);
  samples.forEach((sample, i) => view.setInt16(i * 2, Math.max(-1, Math.min(1, sample)) * 0x7fff, true));
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

export function samplesOfPcm16Base64(base64) {
  const binary = atob(base64);
  const view = new DataView(new ArrayBuffer(binary.length));
  for (let i = 0; i < binary.length; i++) view.setUint8(i, binary.charCodeAt(i));
  const samples = new Float32Array(Math.floor(binary.length / 2));
  for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(i * 2, true) / 0x8000;
  return samples;
}

// A frame's loudness for a meter, 0 (silence, -60 dBFS or less) to 1 (full scale).
export function levelOf(samples) {
  let sum = 0;
  for (const sample of samples) sum += sample * sample;
  const rms = Math.sqrt(sum / Math.max(1, samples.length));
  const db = rms > 0 ? 20 * Math.log10(rms) : SILENT_DB;
  return Math.max(0, Math.min(1, (db - SILENT_DB) / -SILENT_DB));
}

// The context that both records and plays: at 24 kHz the browser resamples the microphone
// to the socket's rate, and replies play at their own rate.
export function audioContext() {
  return new AudioContext({ sampleRate: PCM_RATE });
}

// The open microphone, handing each frame (a Float32Array at the context's rate) to onFrame.
export class Microphone {
  static async open(context, workletUrl, onFrame) {
    if (!worklets.has(context)) worklets.set(context, context.audioWorklet.addModule(workletUrl));
    await worklets.get(context);
    // The browser's echo cancellation keeps the reply coming out of the speakers from
    // sounding like the user speaking over it.
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    return new Microphone(context, stream, onFrame);
  }

  constructor(context, stream, onFrame) {
    this.stream = stream;
    this.source = context.createMediaStreamSource(stream);
    this.node = new AudioWorkletNode(context, "pcm-frames", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      channelCount: 1,
      channelCountMode: "explicit",
      processorOptions: { frameSamples: FRAME_SAMPLES },
    });
    this.flushed = null;
    this.node.port.onmessage = (message) => {
      if (message.data === "flushed") this.flushed?.();
      else onFrame(message.data);
    };
    this.source.connect(this.node);
    this.node.connect(context.destination); // pulled by the graph; it outputs silence
  }

  // Hand over the part-filled frame (the end of a push-to-talk turn).
  flush() {
    return new Promise((resolve) => {
      this.flushed = resolve;
      this.node.port.postMessage("flush");
    });
  }

  close() {
    this.source.disconnect();
    this.node.disconnect();
    this.node.port.onmessage = null;
    this.stream.getTracks().forEach((track) => track.stop());
  }
}

// Replies' audio, item by item, queued back to back; knows what of each item was heard.
export class ReplyPlayer {
  constructor(context) {
    this.context = context;
    this.items = new Map(); // item id -> { pieces: [{ start, seconds, node }], stoppedAt }
    this.playAt = 0;
    this.current = null; // the item whose audio was queued last
  }

  // The context time of the sample leaving the speakers now (not the one being rendered).
  heardUntil() {
    const stamp = this.context.getOutputTimestamp?.();
    if (stamp && Number.isFinite(stamp.contextTime) && stamp.contextTime > 0) return stamp.contextTime;
    return this.context.currentTime;
  }

  play(itemId, samples) {
    if (!samples.length || this.stopped(itemId)) return; // deltas still in flight after a stop
    const now = this.context.currentTime;
    if (this.current !== itemId || this.playAt < now) this.playAt = Math.max(this.playAt, now + JITTER_SECONDS);
    const buffer = this.context.createBuffer(1, samples.length, PCM_RATE);
    buffer.copyToChannel(samples, 0);
    const node = this.context.createBufferSource();
    node.buffer = buffer;
    node.connect(this.context.destination);
    node.start(this.playAt);
    if (!this.items.has(itemId)) this.items.set(itemId, { pieces: [], stoppedAt: null });
    const piece = { start: this.playAt, seconds: buffer.duration, node };
    node.onended = () => (piece.node = null); // its samples can go; its times stay
    this.items.get(itemId).pieces.push(piece);
    this.playAt += buffer.duration;
    this.current = itemId;
  }

  // Milliseconds of the item's audio heard so far (or until it was stopped).
  playedMs(itemId) {
    const item = this.items.get(itemId);
    if (!item) return 0;
    const until = item.stoppedAt ?? this.heardUntil();
    const seconds = item.pieces.reduce((sum, p) => sum + Math.max(0, Math.min(p.seconds, until - p.start)), 0);
    return Math.floor(seconds * 1000);
  }

  // The item still sounding (or queued to), or null.
  sounding() {
    const item = this.items.get(this.current);
    if (!item || item.stoppedAt !== null) return null;
    const last = item.pieces[item.pieces.length - 1];
    return last.start + last.seconds > this.heardUntil() ? this.current : null;
  }

  // Silence the item sounding now; says which it was and how much of it was heard.
  stop() {
    const itemId = this.sounding();
    if (itemId === null) return null;
    const item = this.items.get(itemId);
    item.stoppedAt = this.heardUntil();
    for (const piece of item.pieces) piece.node?.stop();
    this.playAt = 0;
    return { itemId, playedMs: this.playedMs(itemId) };
  }

  stopped(itemId) {
    return this.items.get(itemId)?.stoppedAt != null;
  }
}
