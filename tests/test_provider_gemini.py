"""Google Gemini through ARouter: the official SDK -> ARouter -> the loopback Gemini fake.

Chat with audio input (relayed through the translation to generateContent and
streamGenerateContent, whole and streamed, usage from usageMetadata billed), text chat,
generation settings and thinking, Gemini TTS streamed in every format, and each error
mapping (blocked prompt, bad key, unknown model, invalid argument, 429 retried, 5xx, a
stream cut short), with the ledger's rows billed at the catalog's prices.
"""

import base64
import io
import json
import math

import av
import numpy as np
import openai
import pytest

from gateway.audio.encode import wav_file
from tests.openai_contract import assert_matches, assert_stream_matches
from tests.upstream_helpers import catalog_from, model_table, record_of, upstream_table
from tests.vendor_fakes import gemini as fake
from tests.vendor_fakes.gemini import API_KEY, FakeGemini

KEY_ENV = "ARGEMINI_TEST_KEY"
WRONG_KEY_ENV = "ARGEMINI_WRONG_KEY"
FAST = {"backoff_base": 0.01, "backoff_max": 1.5, "cooldown_after": 50}
CHAT_PRICE = {"per_million_text_input_tokens": 0.3, "per_million_audio_input_tokens": 1.0,
              "per_million_text_output_tokens": 2.5}  # fmt: skip
SPEECH_PRICE = {"per_million_characters": 15}
AUDIO_TOKENS_PER_SECOND = 32  # what Gemini counts a second of audio as


def vendor_model(model_id: str, kind: str, upstream: str, target: str, **fields) -> str:
    return model_table(model_id, kind, upstream, target, provider="gemini", **fields)


@pytest.fixture(scope="module")
def gemini():
    fake = FakeGemini().start()
    yield fake
    fake.stop()


def gemini_catalog(fake: FakeGemini) -> str:
    text = upstream_table("gemini", fake.url, KEY_ENV, **FAST)
    text += upstream_table("gemini-badkey", fake.url, WRONG_KEY_ENV, **FAST)
    hears = {"input_modalities": ["text", "audio"], "price": CHAT_PRICE}
    text += vendor_model("gemini/flash", "chat", "gemini", "gemini-2.5-flash", **hears)
    text += vendor_model("gemini/flash-nothink", "chat", "gemini", "gemini-2.5-flash",
                         options={"thinking_budget": 0}, **hears)  # fmt: skip
    text += vendor_model("gemini/missing", "chat", "gemini", "gemini-9-ultra", **hears)
    text += vendor_model("gemini-badkey/flash", "chat", "gemini-badkey", "gemini-2.5-flash")
    tts = "gemini-2.5-flash-preview-tts"
    text += vendor_model("gemini/tts", "speech", "gemini", tts, price=SPEECH_PRICE)
    text += vendor_model("gemini/tts-whole", "speech", "gemini", tts, price=SPEECH_PRICE,
                         options={"tts_streaming": False})  # fmt: skip
    text += vendor_model("gemini/tts-misvoiced", "speech", "gemini", tts,
                         options={"voices": {"alloy": "NotAVoice"}})  # fmt: skip
    return text


@pytest.fixture
def gemini_models(gemini, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, API_KEY)
    monkeypatch.setenv(WRONG_KEY_ENV, "AIzaSy-wrong")
    gemini.reset()
    with catalog_from(tmp_path / "catalog.toml", gemini_catalog(gemini)):
        yield gemini


def tone(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)


def webm_opus(seconds: float) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="webm") as container:
        stream = container.add_stream("libopus", rate=48000, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone(seconds, 48000).reshape(1, -1), format="s16",
                                           layout="mono")  # fmt: skip
        frame.sample_rate = 48000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()


def audio_message(text: str, seconds: float = 2.0, audio: bytes | None = None,
                  fmt: str = "wav") -> dict:  # fmt: skip
    data = base64.b64encode(audio if audio is not None else wav_file(tone(seconds), 16000))
    audio_part = {"data": data.decode(), "format": fmt}
    return {"role": "user", "content": [
        {"type": "text", "text": text},
        {"type": "input_audio", "input_audio": audio_part}]}  # fmt: skip


def decoded_seconds(audio: bytes) -> float:
    samples, rate = 0, 24000
    with av.open(io.BytesIO(audio)) as container:
        for frame in container.decode(audio=0):
            samples, rate = samples + frame.samples, frame.sample_rate
    return samples / rate


def prompt_text_tokens(*texts: str) -> int:
    return sum(math.ceil(len(t) / 4) for t in texts)


# --- chat with audio input ----------------------------------------------------------------


def test_audio_chat_is_translated_to_generate_content_and_billed(openai_client, gemini_models):
    response = openai_client.chat.completions.with_raw_response.create(
        model="gemini/flash",
        messages=[{"role": "system", "content": "Be brief."}, audio_message("What is this?")],
        max_tokens=50,
        temperature=0.2,
        top_p=0.9,
        stop=["zzz"],
        seed=7,
    )
    body = response.http_response.json()
    assert_matches("CreateChatCompletionResponse", body, extras=["usage.cost"])
    assert body["model"] == "gemini/flash"
    assert (
        body["choices"][0]["message"]["content"] == "I heard 2.0 seconds of audio. (as instructed)"
    )
    assert body["choices"][0]["finish_reason"] == "stop"
    seen = gemini_models.requests[-1]
    assert seen.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert seen.headers["x-goog-api-key"] == API_KEY
    assert "authorization" not in seen.headers
    request = seen.json()
    assert request["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    (content,) = request["contents"]
    assert content["role"] == "user"
    assert content["parts"][0] == {"text": "What is this?"}
    assert content["parts"][1]["inline_data"]["mime_type"] == "audio/wav"
    config = {"maxOutputTokens": 50, "temperature": 0.2, "topP": 0.9, "stopSequences": ["zzz"],
              "seed": 7}  # fmt: skip
    assert request["generationConfig"] == config
    usage = body["usage"]
    audio_tokens = 2 * AUDIO_TOKENS_PER_SECOND
    assert usage["prompt_tokens_details"]["audio_tokens"] == audio_tokens
    text_tokens = prompt_text_tokens("What is this?", "Be brief.")
    assert usage["prompt_tokens"] == text_tokens + audio_tokens
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 7
    assert usage["completion_tokens"] == usage["total_tokens"] - usage["prompt_tokens"]
    record = record_of("gemini/flash")
    assert record.provider == "upstream:gemini"
    assert (record.audio_tokens_in, record.text_tokens_in) == (audio_tokens, text_tokens)
    assert record.text_tokens_out == usage["completion_tokens"] > 7
    assert record.cost > 0
    assert usage["cost"] == pytest.approx(float(record.cost))


def test_streamed_audio_chat_arrives_as_chunks_and_is_billed(openai_client, gemini_models):
    chunks = list(
        openai_client.chat.completions.create(
            model="gemini/flash",
            messages=[audio_message("Listen.", seconds=1.5)],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    raw = [chunk.model_dump(exclude_unset=True) for chunk in chunks]
    assert_stream_matches("CreateChatCompletionStreamResponse", raw, extras=["usage.cost"])
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "I heard 1.5 seconds of audio."
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 6
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens_details.audio_tokens == 48
    assert {c.model for c in chunks} == {"gemini/flash"}
    seen = gemini_models.requests[-1]
    assert seen.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert seen.query["alt"] == ["sse"]
    record = record_of("gemini/flash")
    assert record.audio_tokens_in == 48
    assert record.text_tokens_out == chunks[-1].usage.completion_tokens
    assert record.cost > 0


def test_a_stream_without_include_usage_sends_no_usage_but_is_billed(openai_client, gemini_models):
    chunks = list(
        openai_client.chat.completions.create(
            model="gemini/flash", messages=[audio_message("Listen.")], stream=True
        )
    )
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)
    assert record_of("gemini/flash").cost > 0


def test_webm_audio_is_sent_to_gemini_as_wav(openai_client, gemini_models):
    completion = openai_client.chat.completions.create(
        model="gemini/flash", messages=[audio_message("Hm?", audio=webm_opus(1.0), fmt="webm")]
    )
    assert completion.choices[0].message.content == "I heard 1.0 seconds of audio."
    parts = gemini_models.requests[-1].json()["contents"][0]["parts"]
    assert parts[1]["inline_data"]["mime_type"] == "audio/wav"
    assert base64.b64decode(parts[1]["inline_data"]["data"])[:4] == b"RIFF"


def test_max_tokens_ends_the_reply_with_length(openai_client, gemini_models):
    completion = openai_client.chat.completions.create(
        model="gemini/flash", messages=[audio_message("Go on.")], max_tokens=3
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "I heard "


def test_the_thinking_budget_option_reaches_gemini(openai_client, gemini_models):
    completion = openai_client.chat.completions.create(
        model="gemini/flash-nothink", messages=[audio_message("Quick.")]
    )
    request = gemini_models.requests[-1].json()
    assert request["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 0}
    assert completion.usage.completion_tokens_details.reasoning_tokens == 0


def test_an_unsafe_completion_says_content_filter(openai_client, gemini_models):
    completion = openai_client.chat.completions.create(
        model="gemini/flash", messages=[audio_message("unsafe-output now")]
    )
    assert completion.choices[0].finish_reason == "content_filter"


# --- text chat ----------------------------------------------------------------------------


def test_text_chat_uses_geminis_own_token_counts(openai_client, gemini_models):
    completion = openai_client.chat.completions.create(
        model="gemini/flash",
        messages=[{"role": "user", "content": "Say hello"},
                  {"role": "assistant", "content": "Hi"},
                  {"role": "user", "content": "Again"}],
        max_tokens=20,
    )  # fmt: skip
    assert completion.choices[0].message.content == "Hello from Gemini."
    roles = [content["role"] for content in gemini_models.requests[-1].json()["contents"]]
    assert roles == ["user", "model", "user"]
    record = record_of("gemini/flash")
    assert record.text_tokens_in == prompt_text_tokens("Say hello", "Hi", "Again")
    assert record.text_tokens_out == completion.usage.completion_tokens > 0
    assert record.cost > 0


def test_streamed_text_chat(openai_client, gemini_models):
    stream = openai_client.chat.completions.create(
        model="gemini/flash",
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from Gemini."
    assert chunks[-1].usage.completion_tokens > 0
    assert record_of("gemini/flash").cost > 0


# --- errors -------------------------------------------------------------------------------


def test_a_blocked_prompt_is_a_400_content_filter(openai_client, gemini_models):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(
            model="gemini/flash", messages=[audio_message("blocked-prompt")]
        )
    assert caught.value.code == "content_filter"
    assert "SAFETY" in caught.value.message


def test_a_rejected_key_is_the_gateways_problem(openai_client, gemini_models):
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client.chat.completions.create(
            model="gemini-badkey/flash", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_auth_failed"
    assert "AIzaSy" not in caught.value.message


def test_an_unknown_model_is_model_not_found(openai_client, gemini_models):
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.chat.completions.create(
            model="gemini/missing", messages=[audio_message("hi")]
        )
    assert caught.value.code == "model_not_found"
    assert "models/gemini-9-ultra is not found" in caught.value.message
    assert str(gemini_models.server.port) not in caught.value.message


def test_geminis_invalid_argument_keeps_its_message(openai_client, gemini_models):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.speech.create(model="gemini/tts-misvoiced", voice="alloy", input="hi")
    assert caught.value.code == "invalid_value"
    assert "Voice name NotAVoice is not supported" in caught.value.message


def test_a_429_is_retried(openai_client, gemini_models):
    gemini_models.script(429)
    completion = openai_client.chat.completions.create(
        model="gemini/flash", messages=[audio_message("again")]
    )
    assert completion.choices[0].message.content.startswith("I heard")
    record = record_of("gemini/flash")
    assert (record.attempts, record.status_code) == (2, 200)


def test_persistent_5xx_is_a_502(openai_client, gemini_models):
    gemini_models.script(500, 503, 500)
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client.chat.completions.create(
            model="gemini/flash", messages=[audio_message("again")]
        )
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_error"
    assert record_of("gemini/flash").attempts == 3


def test_a_stream_cut_short_ends_with_an_error_event(openai_client, gemini_models):
    stream = openai_client.chat.completions.create(
        model="gemini/flash", messages=[audio_message("cut-stream")], stream=True
    )
    received = []

    def read_all() -> None:
        received.extend(stream)

    with pytest.raises(openai.APIError) as caught:
        read_all()
    assert "broke off" in caught.value.message
    assert received  # the deltas sent before the cut arrived
    assert record_of("gemini/flash").status_code == 502


# --- text to speech -----------------------------------------------------------------------


def test_speech_is_streamed_piece_by_piece_and_billed(openai_client, gemini_models):
    text = "Gemini reads this sentence aloud, in pieces, as they are made."
    with openai_client.audio.speech.with_streaming_response.create(
        model="gemini/tts", voice="nova", input=text, response_format="pcm"
    ) as response:
        assert response.headers["content-type"] == "audio/pcm"
        pieces = [piece for piece in response.iter_bytes() if piece]
    seconds = len(text) * 0.05
    assert len(b"".join(pieces)) == pytest.approx(seconds * 48000, abs=4)
    assert len(pieces) > 1
    seen = gemini_models.requests[-1]
    assert seen.path == "/v1beta/models/gemini-2.5-flash-preview-tts:streamGenerateContent"
    request = seen.json()
    assert request["contents"] == [{"role": "user", "parts": [{"text": text}]}]
    config = request["generationConfig"]
    assert config["responseModalities"] == ["AUDIO"]
    assert config["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] == "Leda"
    record = record_of("gemini/tts")
    assert record.characters == len(text)
    assert record.audio_seconds_out == pytest.approx(seconds, abs=0.01)
    assert record.cost > 0


def test_pcm_at_geminis_own_rate_is_geminis_audio_as_it_came(openai_client, gemini_models):
    text = "Twenty characters!!"
    audio = openai_client.audio.speech.create(
        model="gemini/tts", voice="alloy", input=text, response_format="pcm"
    ).read()
    assert audio == fake.tone(len(text) * fake.SECONDS_PER_CHARACTER)
    assert record_of("gemini/tts").audio_seconds_out == pytest.approx(len(audio) / 48000)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
def test_every_speech_format_is_encoded_from_geminis_pcm(openai_client, gemini_models, fmt):
    audio = openai_client.audio.speech.create(
        model="gemini/tts", voice="alloy", input="Twenty characters!!", response_format=fmt
    ).read()
    assert decoded_seconds(audio) == pytest.approx(1.0, abs=0.1)


def test_speed_and_instructions(openai_client, gemini_models):
    audio = openai_client.audio.speech.create(
        model="gemini/tts",
        voice="Puck",  # Gemini's own voice names are accepted as they are
        input="Twenty characters!!",
        instructions="Speak calmly.",
        response_format="wav",
        speed=2.0,
    ).read()
    spoken = "Speak calmly: Twenty characters!!"  # the direction goes before the text
    assert decoded_seconds(audio) == pytest.approx(len(spoken) * 0.05 / 2, abs=0.05)
    request = gemini_models.requests[-1].json()
    assert request["contents"][0]["parts"][0]["text"] == spoken
    voice = request["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]
    assert voice["voiceName"] == "Puck"


def test_a_speech_model_without_streaming_answers_whole(openai_client, gemini_models):
    audio = openai_client.audio.speech.create(
        model="gemini/tts-whole", voice="alloy", input="Twenty characters!!", response_format="pcm"
    ).read()
    assert len(audio) == len("Twenty characters!!") * 0.05 * 48000
    assert gemini_models.requests[-1].path.endswith(":generateContent")
    assert record_of("gemini/tts-whole").cost > 0


def test_speech_sse_reports_usage(openai_client, gemini_models):
    with openai_client.audio.speech.with_streaming_response.create(
        model="gemini/tts", voice="alloy", input="Short one.", stream_format="sse"
    ) as response:
        events = [
            json.loads(line.removeprefix("data: "))
            for line in response.read().decode().splitlines()
            if line.startswith("data: ")
        ]
    assert events[-1]["type"] == "speech.audio.done"
    assert events[-1]["usage"]["cost"] > 0


def test_a_teams_own_key_is_sent_as_its_goog_api_key(openai_client, gemini_models, live_key):
    from credentials.models import ProviderCredential

    # The catalog's key for this upstream is wrong; the team's own key is the right one.
    ProviderCredential.store(live_key.api_key.team, "gemini-badkey", API_KEY)
    completion = openai_client.chat.completions.create(
        model="gemini-badkey/flash", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "Hello from Gemini."
    assert gemini_models.requests[-1].headers["x-goog-api-key"] == API_KEY
