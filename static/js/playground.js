// The playground: calls the real /v1 API with a short-lived token for the chosen key.
const root = document.getElementById("playground");
const $ = (id) => document.getElementById(id);

// --- plumbing ---------------------------------------------------------------------------

function csrfToken() {
  const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

let session = { keyId: null, token: null, expiresAt: 0 };

async function token() {
  const keyId = $("key").value;
  const now = Date.now() / 1000;
  if (session.keyId === keyId && session.expiresAt - now > 60) return session.token;
  const response = await fetch(root.dataset.sessionUrl, {
    method: "POST",
    headers: { "X-CSRFToken": csrfToken() },
    body: new URLSearchParams({ key_id: keyId }),
  });
  if (!response.ok) throw new Error("Could not start a playground session for this key.");
  const body = await response.json();
  session = { keyId, token: body.token, expiresAt: body.expires_at };
  return session.token;
}

// An API error in plain words: the envelope's message, never the raw JSON.
function errorMessage(status, text) {
  try {
    const message = JSON.parse(text).error.message;
    if (message) return message;
  } catch {}
  return status ? `The server answered ${status}.` : "The server could not be reached.";
}

function showError(prefix, message) {
  const element = $(`${prefix}-error`);
  element.textContent = message;
  element.hidden = !message;
}

function startTimer(prefix) {
  const started = performance.now();
  $(`${prefix}-busy`).hidden = false;
  const tick = () => ($(`${prefix}-elapsed`).textContent = `${((performance.now() - started) / 1000).toFixed(1)} s`);
  tick();
  const interval = setInterval(tick, 100);
  return () => {
    clearInterval(interval);
    $(`${prefix}-busy`).hidden = true;
  };
}

// The ledger row is written as the response ends; ask a few times.
async function showCost(prefix, requestId) {
  if (!requestId) return;
  const url = root.dataset.costUrl.replace("REQUEST_ID", encodeURIComponent(requestId));
  for (let attempt = 0; attempt < 20; attempt++) {
    const response = await fetch(url);
    if (response.ok) {
      const body = await response.json();
      $(`${prefix}-cost`).textContent = `Cost: $${Number(body.cost).toFixed(6)} (request ${requestId})`;
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

// Server-sent events from a fetch body: yields each event's parsed data.
async function* sseEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (data && data !== "[DONE]") yield JSON.parse(data);
    }
  }
}

// --- tabs --------------------------------------------------------------------------------

for (const tab of document.querySelectorAll("[data-tab]")) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll("[data-tab]")) {
      other.setAttribute("aria-selected", String(other === tab));
      $(other.dataset.tab).hidden = other !== tab;
    }
  });
}

// --- transcribe --------------------------------------------------------------------------

let recorded = null;
let recorder = null;

$("stt-record").addEventListener("click", async () => {
  if (recorder) {
    recorder.stop();
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (event) => chunks.push(event.data);
    recorder.onstop = () => {
      stream.getTracks().forEach((track) => track.stop());
      recorded = new File(chunks, "recording.webm", { type: recorder.mimeType || "audio/webm" });
      $("stt-recorded").textContent = `${(recorded.size / 1024).toFixed(0)} KB recorded`;
      $("stt-record").textContent = "Record";
      recorder = null;
    };
    recorder.start();
    $("stt-record").textContent = "Stop recording";
    $("stt-recorded").textContent = "recording…";
  } catch (error) {
    showError("stt", `The microphone is not available: ${error.message}`);
  }
});

function highlightWords(words, audio) {
  const box = $("stt-text");
  box.replaceChildren(
    ...words.map((word) => {
      const span = document.createElement("span");
      span.textContent = word.word + " ";
      span.dataset.start = word.start;
      span.dataset.end = word.end;
      return span;
    }),
  );
  audio.ontimeupdate = () => {
    for (const span of box.children) {
      const on = audio.currentTime >= span.dataset.start && audio.currentTime < span.dataset.end;
      span.classList.toggle("spoken", on);
    }
  };
}

function showTranscript(format, text, file) {
  const audio = $("stt-audio");
  audio.src = URL.createObjectURL(file);
  audio.hidden = false;
  $("stt-raw").hidden = true;
  if (format === "text" || format === "srt" || format === "vtt") {
    $("stt-text").textContent = format === "text" ? text : "";
    $("stt-raw").textContent = text;
    $("stt-raw").hidden = format === "text";
    return;
  }
  const body = JSON.parse(text);
  if (body.words && body.words.length) highlightWords(body.words, audio);
  else $("stt-text").textContent = body.text;
}

function sttForm(file, stream) {
  const form = new FormData();
  const translate = $("stt-translate").checked;
  const format = $("stt-format").value;
  form.append("file", file);
  form.append("model", $("stt-model").value);
  form.append("response_format", stream ? "json" : format);
  if (!translate && $("stt-language").value.trim()) form.append("language", $("stt-language").value.trim());
  if (!translate && format === "verbose_json" && $("stt-words").checked) {
    form.append("timestamp_granularities[]", "word");
    form.append("timestamp_granularities[]", "segment");
  }
  if (stream) form.append("stream", "true");
  return { form, url: translate ? "/v1/audio/translations" : "/v1/audio/transcriptions", format };
}

async function transcribeStreaming(file) {
  const { form, url } = sttForm(file, true);
  const stop = startTimer("stt");
  try {
    const response = await fetch(url, { method: "POST", headers: { Authorization: `Bearer ${await token()}` }, body: form });
    if (!response.ok) throw new Error(errorMessage(response.status, await response.text()));
    const box = $("stt-text");
    for await (const event of sseEvents(response)) {
      if (event.type === "transcript.text.delta") box.textContent += event.delta;
      if (event.type === "transcript.text.done") box.textContent = event.text;
    }
    $("stt-audio").src = URL.createObjectURL(file);
    $("stt-audio").hidden = false;
    showCost("stt", response.headers.get("x-request-id"));
  } finally {
    stop();
  }
}

function transcribeWithProgress(file) {
  const { form, url, format } = sttForm(file, false);
  return token().then(
    (bearer) =>
      new Promise((resolve, reject) => {
        const xhr = new XMLHttpRequest();
        const stop = startTimer("stt");
        xhr.open("POST", url);
        xhr.setRequestHeader("Authorization", `Bearer ${bearer}`);
        xhr.upload.onprogress = (event) => {
          if (event.lengthComputable) $("stt-progress").value = (100 * event.loaded) / event.total;
        };
        xhr.onload = () => {
          stop();
          if (xhr.status >= 400) return reject(new Error(errorMessage(xhr.status, xhr.responseText)));
          showTranscript(format, xhr.responseText, file);
          showCost("stt", xhr.getResponseHeader("x-request-id"));
          resolve();
        };
        xhr.onerror = () => {
          stop();
          reject(new Error(errorMessage(0, "")));
        };
        xhr.send(form);
      }),
  );
}

$("stt-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("stt", "");
  $("stt-text").textContent = "";
  $("stt-cost").textContent = "";
  const file = $("stt-file").files[0] || recorded;
  if (!file) return showError("stt", "Choose an audio file or record something first.");
  try {
    if ($("stt-stream").checked) await transcribeStreaming(file);
    else await transcribeWithProgress(file);
  } catch (error) {
    showError("stt", error.message);
  }
});

// --- synthesize --------------------------------------------------------------------------

const ttsText = $("tts-text");
const countCharacters = () => ($("tts-count").textContent = ttsText.value.length);
ttsText.addEventListener("input", countCharacters);
countCharacters();

async function loadVoices() {
  try {
    const model = encodeURIComponent($("tts-model").value);
    const response = await fetch(`/v1/audio/voices?model=${model}`, { headers: { Authorization: `Bearer ${await token()}` } });
    if (!response.ok) return;
    const select = $("tts-voice");
    const { data } = await response.json();
    select.replaceChildren(...data.map((voice) => new Option(voice.id, voice.id)));
  } catch {}
}
$("tts-model").addEventListener("change", loadVoices);
$("key").addEventListener("change", loadVoices);
loadVoices();

// mp3 plays while it streams (Media Source); other formats play once whole.
async function playWhileStreaming(response, audio) {
  const chunks = [];
  const reader = response.body.getReader();
  const source = new MediaSource();
  audio.src = URL.createObjectURL(source);
  await new Promise((resolve) => source.addEventListener("sourceopen", resolve, { once: true }));
  const buffer = source.addSourceBuffer("audio/mpeg");
  let started = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    chunks.push(value);
    buffer.appendBuffer(value);
    await new Promise((resolve) => buffer.addEventListener("updateend", resolve, { once: true }));
    if (!started) {
      started = true;
      audio.play().catch(() => {});
    }
  }
  source.endOfStream();
  return new Blob(chunks, { type: "audio/mpeg" });
}

$("tts-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("tts", "");
  $("tts-cost").textContent = "";
  $("tts-download").hidden = true;
  const format = $("tts-format").value;
  const stop = startTimer("tts");
  try {
    const response = await fetch("/v1/audio/speech", {
      method: "POST",
      headers: { Authorization: `Bearer ${await token()}`, "Content-Type": "application/json" },
      body: JSON.stringify({
        model: $("tts-model").value,
        voice: $("tts-voice").value,
        input: ttsText.value,
        response_format: format,
        speed: Number($("tts-speed").value),
      }),
    });
    if (!response.ok) throw new Error(errorMessage(response.status, await response.text()));
    const audio = $("tts-audio");
    let blob;
    if (format === "mp3" && window.MediaSource && MediaSource.isTypeSupported("audio/mpeg")) {
      blob = await playWhileStreaming(response, audio);
    } else {
      blob = await response.blob();
      audio.src = URL.createObjectURL(blob);
      audio.play().catch(() => {});
    }
    const link = $("tts-download");
    link.href = URL.createObjectURL(blob);
    link.download = `speech.${format}`;
    link.textContent = `Download speech.${format} (${(blob.size / 1024).toFixed(0)} KB)`;
    link.hidden = false;
    showCost("tts", response.headers.get("x-request-id"));
  } catch (error) {
    showError("tts", error.message);
  } finally {
    stop();
  }
});

// The Talk tab (the realtime socket) is playground-talk.js.
