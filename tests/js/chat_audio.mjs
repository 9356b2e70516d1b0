// The spec's Audio Chat JavaScript example, verbatim except for baseURL and apiKey (from
// the environment; the test points them at a live ARouter) and a small token cap, since
// the offline text model is a tiny base model. question.wav is written by the test.
import OpenAI from "openai";
import fs from "fs";

const client = new OpenAI({
  baseURL: process.env.AROUTER_BASE_URL,
  apiKey: process.env.AROUTER_API_KEY,
});

const audioData = fs.readFileSync("question.wav").toString("base64");
const response = await client.chat.completions.create({
  model: "openai/gpt-5.4-audio-preview",
  messages: [
    {
      role: "user",
      content: [
        {
          type: "input_audio",
          input_audio: {
            data: audioData,
            format: "wav",
          },
        },
      ],
    },
  ],
  max_completion_tokens: 12,
});
console.log(response.choices[0].message.content);
console.error(JSON.stringify(response.usage));
