// The spec's Text-to-Speech JavaScript example, verbatim except for baseURL and apiKey,
// which come from the environment (the test points them at a live ARouter).
import OpenAI from "openai";
import fs from "fs";

const client = new OpenAI({
  baseURL: process.env.AROUTER_BASE_URL,
  apiKey: process.env.AROUTER_API_KEY,
});

const response = await client.audio.speech.create({
  model: "openai/tts-1-hd",
  voice: "nova",
  input: "Hello! Welcome to ARouter, the universal AI gateway.",
});
const buffer = Buffer.from(await response.arrayBuffer());
fs.writeFileSync("output.mp3", buffer);
