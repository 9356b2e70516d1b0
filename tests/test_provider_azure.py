"""Azure OpenAI through ARouter: the official SDK -> ARouter -> the loopback Azure fake.

Routes (deployments with api-version, and the v1 API), the api-key header, every
transcript format, translations, streamed speech in every format, audio chat relayed
whole and streamed (Azure's filter annotations gone), and each error mapping (content
filter, bad key, unknown deployment, wrong operation, 429 retried, 5xx), with the
ledger's rows billed at the catalog's prices.
"""

import base64
import io
import time

import av
import openai
import pytest

from tests.openai_contract import assert_matches, assert_stream_matches
from tests.tones import tone_wav
from tests.upstream_helpers import catalog_from, model_table, record_of, upstream_table
from tests.vendor_fakes.azure import API_KEY, FakeAzure

KEY_ENV = "ARAZURE_TEST_KEY"
WRONG_KEY_ENV = "ARAZURE_WRONG_KEY"
FAST = {"backoff_base": 0.01, "backoff_max": 1.5, "cooldown_after": 50}
AUDIO_CHAT_PRICE = {"per_million_text_input_tokens": 2.5, "per_million_text_output_tokens": 10,
                    "per_million_audio_input_tokens": 40,
                    "per_million_audio_output_tokens": 80}  # fmt: skip


def vendor_model(model_id: str, kind: str, upstream: str, target: str, **fields) -> str:
    return model_table(model_id, kind, upstream, target, provider="azure", **fields)


@pytest.fixture(scope="module")
def azure():
    fake = FakeAzure().start()
    yield fake
    fake.stop()


def azure_catalog(fake: FakeAzure) -> str:
    text = upstream_table("azure", fake.url, KEY_ENV, api_version="2025-04-01-preview", **FAST)
    text += upstream_table("azure-v1", fake.url, KEY_ENV, api_version="v1", **FAST)
    text += upstream_table("azure-default", fake.url, KEY_ENV, **FAST)
    text += upstream_table("azure-badkey", fake.url, WRONG_KEY_ENV, **FAST)
    minute = {"per_audio_minute": 0.006}
    text += vendor_model("azure/whisper", "transcription", "azure", "whisper", price=minute)
    text += vendor_model("azure/gpt-4o-transcribe", "transcription", "azure", "gpt-4o-transcribe",
                         price=minute, options={"transcript_format": "json"})  # fmt: skip
    text += vendor_model("azure-v1/whisper", "transcription", "azure-v1", "whisper", price=minute)
    text += vendor_model("azure/tts", "speech", "azure", "tts",
                         price={"per_million_characters": 15})  # fmt: skip
    text += vendor_model("azure/audio-chat", "chat", "azure", "gpt-4o-audio-preview",
                         input_modalities=["text", "audio"], output_modalities=["text", "audio"],
                         price=AUDIO_CHAT_PRICE)  # fmt: skip
    text += vendor_model("azure-v1/chat", "chat", "azure-v1", "gpt-4o-mini",
                         price={"per_million_text_input_tokens": 0.15,
                                "per_million_text_output_tokens": 0.6})  # fmt: skip
    text += vendor_model("azure-default/chat", "chat", "azure-default", "gpt-4o-mini")
    text += vendor_model("azure-badkey/tts", "speech", "azure-badkey", "tts")
    text += vendor_model("azure/missing", "speech", "azure", "no-such-deployment")
    text += vendor_model("azure/misrouted", "chat", "azure", "whisper")
    return text


@pytest.fixture
def azure_models(azure, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, API_KEY)
    monkeypatch.setenv(WRONG_KEY_ENV, "not-the-key")
    azure.reset()
    with catalog_from(tmp_path / "catalog.toml", azure_catalog(azure)):
        yield azure


def decoded_seconds(audio: bytes) -> float:
    samples, rate = 0, 24000
    with av.open(io.BytesIO(audio)) as container:
        for frame in container.decode(audio=0):
            samples, rate = samples + frame.samples, frame.sample_rate
    return samples / rate


def audio_message(text: str, seconds: float = 1.0) -> dict:
    data = base64.b64encode(tone_wav(seconds)).decode()
    return {"role": "user", "content": [
        {"type": "text", "text": text},
        {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}]}  # fmt: skip


# --- speech to text -----------------------------------------------------------------------


def test_transcription_goes_to_the_deployment_with_the_api_key(openai_client, azure_models):
    transcript = openai_client.audio.transcriptions.create(
        model="azure/whisper",
        file=("clip.wav", tone_wav(2.5)),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="en",
    )
    assert transcript.text == "azure0 azure1 azure2"
    assert transcript.duration == pytest.approx(2.5)
    assert [w.word for w in transcript.words] == ["azure0", "azure1", "azure2"]
    assert len(transcript.segments) == 3
    seen = azure_models.requests[-1]
    assert seen.path == "/openai/deployments/whisper/audio/transcriptions"
    assert seen.query["api-version"] == ["2025-04-01-preview"]
    assert seen.headers["api-key"] == API_KEY
    assert "authorization" not in seen.headers
    fields, files = seen.form()
    assert fields["response_format"] == ["verbose_json"]
    assert fields["language"] == ["en"]
    assert files["file"].filename == "clip.wav"
    record = record_of("azure/whisper")
    assert record.provider == "upstream:azure"
    assert record.audio_seconds_in == 3.0  # billed by the started second, as OpenAI bills
    assert record.cost > 0


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt"])
def test_every_transcript_format(openai_client, azure_models, fmt):
    answer = openai_client.audio.transcriptions.create(
        model="azure/whisper", file=("clip.wav", tone_wav(1.5)), response_format=fmt
    )
    if fmt == "json":
        assert answer.text == "azure0 azure1"
    elif fmt == "text":
        assert answer.strip() == "azure0 azure1"
    elif fmt == "srt":
        assert answer.startswith("1\n00:00:00,000 --> 00:00:01,000\nazure0")
    else:
        assert answer.startswith("WEBVTT")
        assert "00:00:01.000 --> 00:00:01.500" in answer


def test_streamed_transcription(openai_client, azure_models):
    events = list(
        openai_client.audio.transcriptions.create(
            model="azure/whisper", file=("clip.wav", tone_wav(2.0)), stream=True
        )
    )
    assert events[-1].type == "transcript.text.done"
    assert events[-1].text == "azure0 azure1"
    assert record_of("azure/whisper").cost > 0


def test_a_json_only_deployment_is_asked_for_json_and_its_audio_measured(
    openai_client, azure_models
):
    transcript = openai_client.audio.transcriptions.create(
        model="azure/gpt-4o-transcribe", file=("clip.wav", tone_wav(3.0)), response_format="json"
    )
    assert transcript.text == "azure0 azure1 azure2"
    assert azure_models.requests[-1].form()[0]["response_format"] == ["json"]
    record = record_of("azure/gpt-4o-transcribe")
    assert record.audio_seconds_in == pytest.approx(3.0)
    assert record.cost > 0


def test_translation(openai_client, azure_models):
    translation = openai_client.audio.translations.create(
        model="azure/whisper", file=("clip.wav", tone_wav(1.0))
    )
    assert translation.text == "azure0"
    assert azure_models.requests[-1].path == "/openai/deployments/whisper/audio/translations"
    record = record_of("azure/whisper")
    assert record.endpoint == "/v1/audio/translations"
    assert record.cost > 0


def test_the_v1_api_names_the_deployment_as_the_model(openai_client, azure_models):
    transcript = openai_client.audio.transcriptions.create(
        model="azure-v1/whisper", file=("clip.wav", tone_wav(1.0))
    )
    assert transcript.text == "azure0"
    seen = azure_models.requests[-1]
    assert seen.path == "/openai/v1/audio/transcriptions"
    assert "api-version" not in seen.query
    assert seen.form()[0]["model"] == ["whisper"]


# --- text to speech -----------------------------------------------------------------------


def test_speech_is_streamed_as_azure_sends_it_and_billed(openai_client, azure_models):
    text = "Streamed from an Azure deployment, piece by piece."
    with openai_client.audio.speech.with_streaming_response.create(
        model="azure/tts", voice="nova", input=text, response_format="pcm"
    ) as response:
        assert response.headers["content-type"] == "audio/pcm"
        pieces = [piece for piece in response.iter_bytes() if piece]
    audio = b"".join(pieces)
    assert len(audio) == int(len(text) * 0.05 * 24000) * 2
    assert len(pieces) > 1
    seen = azure_models.requests[-1]
    assert seen.path == "/openai/deployments/tts/audio/speech"
    assert seen.json()["voice"] == "nova"
    record = record_of("azure/tts")
    assert record.characters == len(text)
    assert record.audio_seconds_out == pytest.approx(len(text) * 0.05, abs=0.01)
    assert record.cost > 0


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
def test_every_speech_format_decodes(openai_client, azure_models, fmt):
    audio = openai_client.audio.speech.create(
        model="azure/tts", voice="alloy", input="Twenty characters!!", response_format=fmt
    ).read()
    assert decoded_seconds(audio) == pytest.approx(1.0, abs=0.1)


def test_a_voice_the_deployment_lacks_is_azures_400(openai_client, azure_models):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.speech.create(model="azure/tts", voice="ash", input="hi")
    assert caught.value.code == "invalid_value"
    assert caught.value.param == "voice"


# --- chat ---------------------------------------------------------------------------------


def test_audio_chat_is_relayed_whole_without_azures_annotations(openai_client, azure_models):
    response = openai_client.chat.completions.with_raw_response.create(
        model="azure/audio-chat", messages=[audio_message("What is this sound?", 2.0)]
    )
    body = response.http_response.json()
    assert_matches("CreateChatCompletionResponse", body, extras=["usage.cost"])
    assert body["model"] == "azure/audio-chat"
    assert body["choices"][0]["message"]["content"] == "I heard 2.0 seconds of audio."
    seen = azure_models.requests[-1]
    assert seen.path == "/openai/deployments/gpt-4o-audio-preview/chat/completions"
    assert seen.json()["messages"][0]["content"][1]["type"] == "input_audio"
    record = record_of("azure/audio-chat")
    assert record.audio_tokens_in == 20
    assert record.text_tokens_in > 0
    assert record.cost > 0


def test_streamed_audio_chat_speaks_and_bills(openai_client, azure_models):
    chunks = list(
        openai_client.chat.completions.create(
            model="azure/audio-chat",
            messages=[audio_message("Answer aloud.")],
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "pcm16"},
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    raw = [chunk.model_dump(exclude_unset=True) for chunk in chunks]
    # OpenAI streams delta.audio, which its published schema does not declare.
    extras = ["usage.cost", "choices.*.delta.audio"]
    assert_stream_matches("CreateChatCompletionStreamResponse", raw, extras=extras)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    audio = [a if isinstance(a, dict) else a.model_dump() for d in deltas if (a := d.audio)]
    assert any(a.get("transcript") == "I heard 1.0 seconds of audio." for a in audio)
    assert any(a.get("data") for a in audio)
    assert chunks[-1].usage.completion_tokens_details.audio_tokens == 20
    record = record_of("azure/audio-chat")
    assert (record.audio_tokens_in, record.audio_tokens_out) == (10, 20)
    assert record.cost > 0


def test_text_chat_on_the_v1_api(openai_client, azure_models):
    completion = openai_client.chat.completions.create(
        model="azure-v1/chat", messages=[{"role": "user", "content": "Say hi"}], max_tokens=8
    )
    assert completion.choices[0].message.content == "Hello from Azure."
    seen = azure_models.requests[-1]
    assert seen.path == "/openai/v1/chat/completions"
    assert seen.json()["model"] == "gpt-4o-mini"
    assert record_of("azure-v1/chat").cost > 0


def test_the_default_api_version_is_the_latest_ga(openai_client, azure_models):
    openai_client.chat.completions.create(
        model="azure-default/chat", messages=[{"role": "user", "content": "hi"}], max_tokens=8
    )
    assert azure_models.requests[-1].query["api-version"] == ["2024-10-21"]


def test_a_completion_cut_by_the_filter_says_content_filter(openai_client, azure_models):
    completion = openai_client.chat.completions.create(
        model="azure/audio-chat", messages=[audio_message("unsafe-output please")]
    )
    assert completion.choices[0].finish_reason == "content_filter"
    assert "content_filter_results" not in completion.choices[0].model_extra


# --- errors -------------------------------------------------------------------------------


def test_a_filtered_prompt_is_a_400_content_filter(openai_client, azure_models):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(
            model="azure/audio-chat", messages=[audio_message("something forbidden")]
        )
    assert caught.value.code == "content_filter"
    assert caught.value.param is None
    assert "content management policy" in caught.value.message
    assert "filtered: violence (high)" in caught.value.message
    assert record_of("azure/audio-chat").status_code == 400


def test_a_wrong_key_is_the_gateways_problem(openai_client, azure_models):
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client.audio.speech.create(model="azure-badkey/tts", voice="alloy", input="hi")
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_auth_failed"
    assert "not-the-key" not in caught.value.message


def test_an_unknown_deployment_is_model_not_found(openai_client, azure_models):
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.audio.speech.create(model="azure/missing", voice="alloy", input="hi")
    assert caught.value.code == "model_not_found"
    assert "deployment for this resource does not exist" in caught.value.message


def test_an_operation_the_deployment_cannot_do_is_model_not_supported(openai_client, azure_models):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(
            model="azure/misrouted", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
    assert caught.value.code == "model_not_supported"
    assert "does not work with the specified model, whisper" in caught.value.message


def test_a_429_is_retried_after_its_retry_after(openai_client, azure_models):
    azure_models.script(429)
    started = time.monotonic()
    transcript = openai_client.audio.transcriptions.create(
        model="azure/whisper", file=("clip.wav", tone_wav(1.0))
    )
    assert transcript.text == "azure0"
    assert time.monotonic() - started >= 0.9
    record = record_of("azure/whisper")
    assert (record.attempts, record.status_code) == (2, 200)


def test_a_persistent_429_is_a_429_with_azures_message(openai_client, azure_models):
    azure_models.script(429, 429, 429)
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client.audio.speech.create(model="azure/tts", voice="alloy", input="hi")
    assert caught.value.code == "rate_limit_exceeded"
    assert "exceeded token rate limit" in caught.value.message
    assert caught.value.response.headers["retry-after"] == "1"


def test_persistent_5xx_is_a_502(openai_client, azure_models):
    azure_models.script(500, 503, 500)
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client.chat.completions.create(
            model="azure-v1/chat", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_error"
    assert record_of("azure-v1/chat").attempts == 3


def test_a_teams_own_key_is_sent_as_its_api_key(openai_client, azure_models, live_key):
    from credentials.models import ProviderCredential

    # The catalog's key for this upstream is wrong; the team's own key is the right one.
    ProviderCredential.store(live_key.api_key.team, "azure-badkey", API_KEY)
    audio = openai_client.audio.speech.create(
        model="azure-badkey/tts", voice="alloy", input="Own key.", response_format="pcm"
    ).read()
    assert audio
    assert azure_models.requests[-1].headers["api-key"] == API_KEY
