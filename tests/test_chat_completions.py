"""POST /v1/chat/completions with text: validation errors, replies, SSE chunks, usage.

The local text model is Gemma 3 270M, a tiny BASE model: its replies are not meaningful,
so these tests assert on shapes, token accounting and limits, never on what it says.
"""

import base64
import json

import pytest
from django.test import AsyncClient

from tests.openai_errors import assert_error
from usage.models import UsageRecord

URL = "/v1/chat/completions"
TEXT_MODEL = "local/gemma-3-270m"


def post(api, body: dict):
    return api.post(URL, data=json.dumps(body), content_type="application/json")


def sse_events(raw: bytes) -> list:
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        payload = block.removeprefix("data: ")
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


WAV_B64 = base64.b64encode(b"RIFF not really").decode()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": TEXT_MODEL, "messages": []}, "messages"),
        ({"model": TEXT_MODEL}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        (
            {"model": TEXT_MODEL, "messages": [{"role": "wizard", "content": "hi"}]},
            "messages[0].role",
        ),
        (
            {"model": TEXT_MODEL, "messages": [{"role": "user", "content": 7}]},
            "messages[0].content",
        ),
        (
            {
                "model": TEXT_MODEL,
                "messages": [{"role": "user", "content": [{"type": "image_url"}]}],
            },
            "messages[0].content[0].type",
        ),
        (
            {
                "model": "local/audio-chat",
                "messages": [
                    {"role": "user", "content": "hi"},
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "input_audio",
                                "input_audio": {"data": "%%%not base64%%%", "format": "wav"},
                            }
                        ],
                    },
                ],
            },
            "messages[1].content[0].input_audio.data",
        ),
        (
            {
                "model": "local/audio-chat",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "input_audio",
                                "input_audio": {"data": WAV_B64, "format": "aiff"},
                            }
                        ],
                    }
                ],
            },
            "messages[0].content[0].input_audio.format",
        ),
        (
            {
                "model": TEXT_MODEL,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "input_audio",
                                "input_audio": {"data": WAV_B64, "format": "wav"},
                            }
                        ],
                    }
                ],
            },
            "messages[0].content[0].type",
        ),
        (
            {
                "model": TEXT_MODEL,
                "modalities": ["text", "audio"],
                "audio": {"voice": "nova", "format": "mp3"},
                "messages": [{"role": "user", "content": "hi"}],
            },
            "modalities",
        ),
        (
            {
                "model": "local/audio-chat",
                "modalities": ["text", "audio"],
                "messages": [{"role": "user", "content": "hi"}],
            },
            "audio",
        ),
        (
            {
                "model": "local/audio-chat",
                "modalities": ["text", "audio"],
                "audio": {"voice": "nova", "format": "ogg"},
                "messages": [{"role": "user", "content": "hi"}],
            },
            "audio.format",
        ),
        (
            {
                "model": "local/audio-chat",
                "modalities": ["text", "audio"],
                "audio": {"voice": "nobody", "format": "wav"},
                "messages": [{"role": "user", "content": "hi"}],
            },
            "audio.voice",
        ),
        (
            {
                "model": "local/audio-chat",
                "modalities": ["text", "audio"],
                "stream": True,
                "audio": {"voice": "nova", "format": "mp3"},
                "messages": [{"role": "user", "content": "hi"}],
            },
            "audio.format",
        ),
        (
            {
                "model": TEXT_MODEL,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": "hi"}],
            },
            "stream_options",
        ),
        (
            {
                "model": TEXT_MODEL,
                "max_completion_tokens": 0,
                "messages": [{"role": "user", "content": "hi"}],
            },
            "max_completion_tokens",
        ),
        (
            {
                "model": TEXT_MODEL,
                "temperature": 3,
                "messages": [{"role": "user", "content": "hi"}],
            },
            "temperature",
        ),
        (
            {
                "model": "local/audio-chat",
                "messages": [
                    {"role": "assistant", "audio": {"id": "audio_unknown"}},
                    {"role": "user", "content": "hi"},
                ],
            },
            "messages[0].audio.id",
        ),
    ],
)
def test_bad_requests_name_the_param(api, body, param):
    assert_error(post(api, body), 400, param)


def test_non_json_body_is_a_400(api):
    response = api.post(URL, data="{oops", content_type="application/json")
    assert_error(response, 400, None)


def test_unknown_and_wrong_kind_models(api):
    messages = [{"role": "user", "content": "hi"}]
    response = post(api, {"model": "nobody/nothing", "messages": messages})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert_error(post(api, {"model": "local/piper", "messages": messages}), 400, "model")


def test_missing_key_is_401(client):
    response = client.post(URL, data="{}", content_type="application/json")
    assert response.status_code == 401


@pytest.mark.engines
def test_text_reply_shape_and_usage(api, api_key):
    response = post(
        api,
        {
            "model": TEXT_MODEL,
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": [{"type": "text", "text": "Tell me a short joke."}]},
            ],
            "max_completion_tokens": 8,
            "seed": 7,
        },
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == TEXT_MODEL
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert "audio" not in choice["message"]
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert 0 < usage["completion_tokens"] <= 8
    assert usage["prompt_tokens"] > 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"] == {"audio_tokens": 0, "cached_tokens": 0}
    assert usage["completion_tokens_details"] == {"audio_tokens": 0}
    record = UsageRecord.objects.get()
    assert record.endpoint == URL
    assert record.status_code == 200
    assert record.text_tokens_in == usage["prompt_tokens"]
    assert record.text_tokens_out == usage["completion_tokens"]
    assert record.cost > 0
    assert usage["cost"] == pytest.approx(float(record.cost))


@pytest.mark.engines
def test_max_tokens_is_respected(api):
    response = post(
        api,
        {
            "model": TEXT_MODEL,
            "messages": [{"role": "user", "content": "Count from one to one hundred: one, two,"}],
            "max_tokens": 3,
            "temperature": 0,
        },
    )
    body = response.json()
    assert body["usage"]["completion_tokens"] <= 3
    if body["usage"]["completion_tokens"] == 3:
        assert body["choices"][0]["finish_reason"] == "length"


@pytest.mark.engines
@pytest.mark.django_db(transaction=True)
async def test_text_stream_chunks_then_usage_then_done(api_key):
    response = await AsyncClient().post(
        URL,
        data=json.dumps(
            {
                "model": TEXT_MODEL,
                "messages": [{"role": "user", "content": "Count: one, two, three,"}],
                "stream": True,
                "stream_options": {"include_usage": True},
                "max_completion_tokens": 6,
                "temperature": 0,
            }
        ),
        content_type="application/json",
        headers={"Authorization": f"Bearer {api_key.raw}"},
    )
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/event-stream")
    raw = b"".join([part async for part in response.streaming_content])
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finals) == 1
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert 0 < usage_chunk["usage"]["completion_tokens"] <= 6
    assert all(c["usage"] is None for c in chunks[:-1])
    assert content.strip()


@pytest.mark.django_db(transaction=True)
async def test_stored_audio_reply_resolves_only_for_its_team(api_key, outsider_key, tmp_path):
    from gateway.chat import replies
    from tests.cascade_text_model import text_model_on_fault_server

    audio_id = replies.new_audio_id()
    await replies.remember(
        audio_id, "Paris is the capital.", replies.expiry(), api_key.api_key.team_id
    )
    body = {
        "model": "local/audio-chat",
        "messages": [
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "audio": {"id": audio_id}},
            {"role": "user", "content": "Thanks."},
        ],
        "max_completion_tokens": 1,
    }
    with text_model_on_fault_server(tmp_path) as asked:
        ok = await AsyncClient().post(
            URL,
            data=json.dumps(body),
            content_type="application/json",
            headers={"Authorization": f"Bearer {api_key.raw}"},
        )
        assert ok.status_code == 200, ok.content
        (sent,) = asked()
        assert sent["messages"][-2] == {"role": "assistant", "content": "Paris is the capital."}
        foreign = await AsyncClient().post(
            URL,
            data=json.dumps(body),
            content_type="application/json",
            headers={"Authorization": f"Bearer {outsider_key.raw}"},
        )
    assert_error(foreign, 400, "messages[1].audio.id")


# --- OpenAI's schemas (tests/contract/) ---------------------------------------------------


@pytest.mark.engines
@pytest.mark.django_db(transaction=True)
async def test_reply_and_chunks_match_openais_schemas_without_a_null_fingerprint(api_key):
    from tests.openai_contract import assert_matches, assert_stream_matches

    client, auth = AsyncClient(), {"Authorization": f"Bearer {api_key.raw}"}
    body = {
        "model": TEXT_MODEL,
        "messages": [{"role": "user", "content": "Count: one, two, three,"}],
        "max_completion_tokens": 4,
    }
    reply = await client.post(
        URL, data=json.dumps(body), content_type="application/json", headers=auth
    )
    assert reply.status_code == 200, reply.content
    # system_fingerprint is a string in the spec; we have none, so it is left out.
    assert "system_fingerprint" not in reply.json()
    assert_matches("CreateChatCompletionResponse", reply.json(), extras=["usage.cost"])
    streamed = await client.post(
        URL,
        data=json.dumps({**body, "stream": True, "stream_options": {"include_usage": True}}),
        content_type="application/json",
        headers=auth,
    )
    raw = b"".join([part async for part in streamed.streaming_content])
    *chunks, done = sse_events(raw)
    assert done == "[DONE]"
    assert not any("system_fingerprint" in c for c in chunks)
    assert_stream_matches("CreateChatCompletionStreamResponse", chunks, extras=["usage.cost"])


@pytest.mark.engines
def test_text_far_past_the_context_is_refused_before_tokenizing(openai_client, arouter_server):
    """8 MB of text: refused on its length (it took 30 s of CPU to tokenize before the
    context-length 400), the same error OpenAI gives, streaming or not."""
    import httpx
    import openai

    messages = [{"role": "user", "content": "word " * 1_600_000}]
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client.chat.completions.create(model=TEXT_MODEL, messages=messages)
    error = refused.value.body
    assert refused.value.code == "context_length_exceeded"
    assert error["param"] == "messages"
    assert "characters, more than 2048 tokens can hold" in error["message"]

    response = httpx.post(
        f"{arouter_server.url}/v1/chat/completions",
        json={"model": TEXT_MODEL, "messages": messages, "stream": True},
        headers={"Authorization": f"Bearer {openai_client.api_key}"},
        timeout=120,
    )
    events = sse_events(response.content)
    assert events[-1]["error"]["code"] == "context_length_exceeded"
    assert "characters" in events[-1]["error"]["message"]
