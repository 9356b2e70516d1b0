// The playground's Talk tab: a conversation on the realtime socket (OpenAI's Realtime events).
//
// Talk: the microphone stays open and streams 100 ms frames; the server's VAD finds each
// turn and answers it. Speaking over a reply (input_audio_buffer.speech_started while it
// plays) stops it at once and truncates the assistant item to what was heard.
// Push to talk: turn detection off (turn_detection: null); press, speak, press again to
// commit the turn and ask for the response.
//
// The socket authenticates with the page's login and names the key to bill (key_id).
import { Microphone, ReplyPlayer, audioContext, levelOf, pcm16Base64, samplesOfPcm16Base64 } from "./realtime-audio.js";

const $ = (id) => document.getElementById(id);
const panel = $("talk");

const talk = {
  socket: null,
  opened: null, // { model, keyId } of the socket
  context: null,
  player: null,
  microphone: null,
  mode: null, // "talk" (hands-free) or "push" (push to talk, while recording)
  entries: new Map(), // item id -> its <li> in the conversation log
  lastHeard: null, // the user turn the next response answers: the last one heard
  responses: new Map(), // response id -> { userItem, itemId }
  activeResponse: null,
};

function showError(message) {
  $("chat-error").textContent = message;
  $("chat-error").hidden = !message;
}

function setState(text) {
  $("chat-state").textContent = text;
}

function send(event) {
  if (talk.socket?.readyState === WebSocket.OPEN) talk.socket.send(JSON.stringify(event));
}

const dollars = (cost) => `$${Number(cost).toFixed(6)}`;

// --- the conversation log ------------------------------------------------------------------

function entry(itemId, role) {
  let item = talk.entries.get(itemId);
  if (item) return item;
  item = document.createElement("li");
  item.className = `turn ${role}`;
  item.dataset.itemId = itemId;
  item.dataset.state = role === "user" ? "speaking" : "answering";
  const who = document.createElement("strong");
  who.textContent = role === "user" ? "You" : "Assistant";
  const text = document.createElement("span");
  text.className = "text";
  const note = document.createElement("span");
  note.className = "note";
  const cost = document.createElement("span");
  cost.className = "cost";
  item.append(who, " ", text, " ", note, " ", cost);
  $("talk-log").append(item);
  talk.entries.set(itemId, item);
  item.scrollIntoView({ block: "nearest" });
  return item;
}

const part = (item, name) => item.querySelector(`.${name}`);

function markInterrupted(itemId, playedMs) {
  const item = entry(itemId, "assistant");
  item.classList.add("interrupted");
  item.dataset.state = "interrupted";
  if (playedMs !== undefined) item.dataset.playedMs = playedMs;
  part(item, "note").textContent =
    playedMs === undefined ? "(interrupted)" : `(interrupted after ${(playedMs / 1000).toFixed(1)} s)`;
}

// --- playback and barge-in -----------------------------------------------------------------

// Stop the reply being heard and cut its item to what was played (OpenAI's barge-in: the
// model must not think the user heard the rest).
function interruptReply() {
  const stopped = talk.player?.stop();
  if (!stopped) return;
  send({ type: "conversation.item.truncate", item_id: stopped.itemId, content_index: 0, audio_end_ms: stopped.playedMs });
  markInterrupted(stopped.itemId, stopped.playedMs);
}

setInterval(() => {
  if (talk.player?.current) $("chat-played").textContent = (talk.player.playedMs(talk.player.current) / 1000).toFixed(1);
}, 100);

// --- events from the server ----------------------------------------------------------------

// The server answers a turn once it is heard, and hears turns in order: the response that
// starts next answers this one (later turns may already be committed, still unheard).
function userTurnHeard(event) {
  talk.lastHeard = event.item_id;
  const item = entry(event.item_id, "user");
  part(item, "text").textContent = event.transcript;
  item.dataset.state = "heard";
  const cost = event.usage?.cost;
  if (cost !== undefined) {
    item.dataset.cost = cost;
    part(item, "cost").textContent = `heard ${dollars(cost)}`;
  }
}

function responseDone(response) {
  const { userItem, itemId } = talk.responses.get(response.id) ?? {};
  talk.activeResponse = null;
  const outputId = itemId ?? response.output?.[0]?.id;
  if (outputId) {
    const item = entry(outputId, "assistant");
    if (response.status === "cancelled" && !item.classList.contains("interrupted")) {
      if (response.status_details?.reason === "turn_detected") markInterrupted(outputId);
      else part(item, "note").textContent = "(cancelled)";
    }
    if (item.dataset.state === "answering") item.dataset.state = response.status;
    item.dataset.status = response.status;
    const cost = response.usage?.cost;
    if (cost !== undefined) {
      const heard = Number(talk.entries.get(userItem)?.dataset.cost ?? 0);
      const turn = heard + Number(cost);
      item.dataset.cost = cost;
      item.dataset.turnCost = turn;
      part(item, "cost").textContent = `reply ${dollars(cost)} · turn ${dollars(turn)}`;
      $("chat-cost").textContent = `Cost of this turn: ${dollars(turn)}`;
    }
  }
  if (response.status === "failed") showError(response.status_details?.error?.message ?? "The response failed.");
  if (talk.mode === "talk") setState("Listening…");
  else if (!talk.mode) setState("Done. Press to talk again.");
}

const handlers = {
  "input_audio_buffer.speech_started": (event) => {
    interruptReply(); // barge-in: the user speaks over the reply
    entry(event.item_id, "user").dataset.state = "speaking";
    setState("Hearing you…");
  },
  "input_audio_buffer.speech_stopped": (event) => {
    entry(event.item_id, "user").dataset.state = "stopped";
    setState("Thinking…");
  },
  "input_audio_buffer.committed": (event) => {
    entry(event.item_id, "user").dataset.state = "committed";
  },
  "conversation.item.input_audio_transcription.delta": (event) => {
    part(entry(event.item_id, "user"), "text").textContent += event.delta;
  },
  "conversation.item.input_audio_transcription.completed": userTurnHeard,
  "conversation.item.input_audio_transcription.failed": (event) => {
    const item = entry(event.item_id, "user");
    item.dataset.state = "failed";
    part(item, "note").textContent = `(not heard: ${event.error?.message ?? "transcription failed"})`;
  },
  "response.created": (event) => {
    talk.activeResponse = event.response.id;
    talk.responses.set(event.response.id, { userItem: talk.lastHeard });
    setState("Answering…");
  },
  "response.output_item.added": (event) => {
    const response = talk.responses.get(event.response_id);
    if (response) response.itemId = event.item.id;
    const item = entry(event.item.id, "assistant");
    item.dataset.responseId = event.response_id;
    if (response?.userItem) item.dataset.answers = response.userItem;
  },
  "response.output_audio_transcript.delta": (event) => {
    part(entry(event.item_id, "assistant"), "text").textContent += event.delta;
  },
  "response.output_text.delta": (event) => {
    part(entry(event.item_id, "assistant"), "text").textContent += event.delta;
  },
  "response.output_audio.delta": (event) => {
    talk.player.play(event.item_id, samplesOfPcm16Base64(event.delta));
  },
  "conversation.item.truncated": (event) => {
    entry(event.item_id, "assistant").dataset.truncatedMs = event.audio_end_ms;
  },
  "response.done": (event) => responseDone(event.response),
  error: (event) => {
    // Pressing to talk raced the reply's own end: nothing was left to cancel.
    if (event.error.code !== "response_cancel_not_active") showError(event.error.message);
  },
};

// --- the socket -----------------------------------------------------------------------------

function closeSocket() {
  talk.socket?.close();
  talk.socket = null;
}

function openSocket() {
  const wanted = { model: $("chat-model").value, keyId: $("key").value };
  const same = talk.opened?.model === wanted.model && talk.opened?.keyId === wanted.keyId;
  if (talk.socket && same && talk.socket.readyState <= WebSocket.OPEN) return talk.ready;
  closeSocket();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = new URLSearchParams({ model: wanted.model, key_id: wanted.keyId });
  const socket = new WebSocket(`${scheme}://${location.host}/v1/realtime?${query}`);
  socket.onmessage = (message) => {
    if (socket !== talk.socket) return;
    const event = JSON.parse(message.data);
    handlers[event.type]?.(event);
  };
  socket.onclose = (close) => {
    if (socket !== talk.socket) return;
    if (close.code === 1008) showError(close.reason || "The realtime session was refused.");
    talk.socket = null;
    stopMicrophone();
    setMode(null);
  };
  talk.socket = socket;
  talk.opened = wanted;
  talk.ready = new Promise((resolve, reject) => {
    socket.onopen = () => resolve(socket);
    socket.onerror = () => reject(new Error("The realtime connection failed."));
  });
  return talk.ready;
}

// The session for this mode: the voice, and server VAD turns or none (push to talk).
function configure(turnDetection) {
  send({
    type: "session.update",
    session: { type: "realtime", audio: { input: { turn_detection: turnDetection }, output: { voice: $("chat-voice").value } } },
  });
}

// --- the microphone -------------------------------------------------------------------------

// The audio context is made (and resumed) on the button's click: browsers start audio only
// on a gesture.
async function prepareAudio() {
  talk.context ??= audioContext();
  talk.player ??= new ReplyPlayer(talk.context);
  await talk.context.resume();
}

async function startMicrophone() {
  talk.microphone = await Microphone.open(talk.context, panel.dataset.workletUrl, (frame) => {
    $("talk-level").value = levelOf(frame);
    send({ type: "input_audio_buffer.append", audio: pcm16Base64(frame) });
  });
}

function stopMicrophone() {
  talk.microphone?.close();
  talk.microphone = null;
  $("talk-level").value = 0;
}

function setMode(mode) {
  talk.mode = mode;
  panel.dataset.mode = mode ?? "";
  $("talk-mode").textContent = mode === "talk" ? "Stop talking" : "Talk";
  $("chat-talk").textContent = mode === "push" ? "Stop and send" : "Push to talk";
  $("talk-mode").disabled = mode === "push";
  $("chat-talk").disabled = mode === "talk";
}

async function startTalkMode() {
  await prepareAudio();
  await openSocket();
  configure({ type: "server_vad" });
  await startMicrophone();
  setMode("talk");
  setState("Listening… speak, pause, and it answers; speak over a reply to interrupt it.");
}

function stopTalkMode() {
  stopMicrophone();
  send({ type: "input_audio_buffer.clear" }); // a turn half spoken is dropped
  setMode(null);
  setState("Stopped.");
}

async function startPushToTalk() {
  await prepareAudio();
  await openSocket();
  if (talk.activeResponse) send({ type: "response.cancel" }); // pressing talks over the reply
  interruptReply();
  configure(null);
  await startMicrophone();
  setMode("push");
  setState("Listening… press again to send.");
}

async function sendPushToTalk() {
  await talk.microphone.flush();
  stopMicrophone();
  send({ type: "input_audio_buffer.commit" });
  send({ type: "response.create" });
  setMode(null);
  setState("Thinking…");
}

function guarded(action) {
  return async () => {
    showError("");
    try {
      await action();
    } catch (error) {
      stopMicrophone();
      setMode(null);
      showError(error.message);
    }
  };
}

$("talk-mode").addEventListener("click", guarded(() => (talk.mode === "talk" ? stopTalkMode() : startTalkMode())));
$("chat-talk").addEventListener("click", guarded(() => (talk.mode === "push" ? sendPushToTalk() : startPushToTalk())));
$("key").addEventListener("change", () => {
  if (!talk.mode) closeSocket(); // the next turn opens a socket billed to the new key
});
setMode(null);
