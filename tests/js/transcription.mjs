// The spec's transcription JavaScript example, except for baseURL and apiKey (from the
// environment) and the last line: with response_format "text" the SDK resolves to a plain
// string (as against OpenAI itself), so `transcription.text` would print `undefined`.
import OpenAI from "openai";
import fs from "fs";

const client = new OpenAI({
  baseURL: process.env.AROUTER_BASE_URL,
  apiKey: process.env.AROUTER_API_KEY,
});

const transcription = await client.audio.transcriptions.create({
  model: "openai/whisper-large-v3",
  file: fs.createReadStream("audio.mp3"),
  response_format: "text",
});
console.log(transcription);
