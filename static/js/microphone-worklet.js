// The microphone's samples in frames of a fixed size, off the page's main thread.
// The AudioContext runs at the socket's rate (24 kHz), so the browser has already resampled
// the microphone; this only cuts its 128-sample blocks into frames (100 ms by default).
// A "flush" message sends what a frame holds so far (the end of a push-to-talk turn).

class PcmFrames extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.size = options.processorOptions?.frameSamples ?? 2400;
    this.frame = new Float32Array(this.size);
    this.filled = 0;
    this.port.onmessage = (message) => {
      if (message.data === "flush") {
        this.post(this.filled);
        this.port.postMessage("flushed");
      }
    };
  }

  post(length) {
    if (length === 0) return;
    const frame = this.frame.slice(0, length);
    this.port.postMessage(frame, [frame.buffer]);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0]?.[0];
    if (!channel) return true; // not connected yet (or any more)
    let offset = 0;
    while (offset < channel.length) {
      const taken = Math.min(channel.length - offset, this.size - this.filled);
      this.frame.set(channel.subarray(offset, offset + taken), this.filled);
      this.filled += taken;
      offset += taken;
      if (this.filled === this.size) this.post(this.size);
    }
    return true;
  }
}

registerProcessor("pcm-frames", PcmFrames);
