// The npm package's OpenAIRealtimeWS against ARouter: the client's baseURL is the live
// server (over TLS: the SDK always opens wss://), its key the apiKey. One session: an
// unknown event (an `error` event, the socket stays open), session.update to text output
// and push-to-talk, a user text item, response.create; every event is printed as a line
// of JSON, errors the SDK raises as {"type": "sdk.error"}.
import fs from "fs";
import OpenAI from "openai";
import { OpenAIRealtimeWS } from "openai/realtime/ws";

const client = new OpenAI({
  baseURL: process.env.AROUTER_TLS_BASE_URL,
  apiKey: process.env.AROUTER_API_KEY,
});
const rt = new OpenAIRealtimeWS(
  { model: "local/audio-chat", options: { ca: fs.readFileSync(process.env.AROUTER_TLS_CA) } },
  client,
);

rt.on("event", (event) => console.log(JSON.stringify(event)));
rt.on("error", (error) => {
  console.log(JSON.stringify({ type: "sdk.error", message: error.message, code: error.error?.code }));
});
rt.on("response.done", () => rt.close());

rt.socket.on("open", () => {
  rt.send({ type: "conversation.frobnicate", event_id: "evt_unknown" });
  rt.send({
    type: "session.update",
    session: {
      type: "realtime",
      output_modalities: ["text"],
      audio: { input: { turn_detection: null } },
    },
  });
  rt.send({
    type: "conversation.item.create",
    item: {
      type: "message",
      role: "user",
      content: [{ type: "input_text", text: "What is the capital of France?" }],
    },
  });
  rt.send({ type: "response.create", response: { max_output_tokens: 24 } });
});
rt.socket.on("close", (code) => console.log(JSON.stringify({ type: "socket.closed", code })));
