"""Bodies no SDK would send, over real HTTP to the live server: each is a 400 in OpenAI's
envelope naming what is wrong (they were 500s: Django's multipart parser, Python's JSON
parser and the pricing arithmetic raised on them)."""

import json

import httpx
import pytest

from tests.openai_errors import assert_error

WAV = b"RIFF\x24\x00\x00\x00WAVEfmt "  # never decoded: every request here is refused first


@pytest.fixture
def http(arouter_server, live_key):
    with httpx.Client(
        base_url=f"{arouter_server.url}/v1",
        headers={"Authorization": f"Bearer {live_key.raw}"},
        timeout=60,
    ) as client:
        yield client


def multipart(filename: bytes, boundary: bytes = b"XyZ") -> bytes:
    return b"".join(
        [
            b"--" + boundary + b"\r\n",
            b'Content-Disposition: form-data; name="model"\r\n\r\nlocal/whisper-base\r\n',
            b"--" + boundary + b"\r\n",
            b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n',
            b"Content-Type: audio/wav\r\n\r\n" + WAV + b"\r\n",
            b"--" + boundary + b"--\r\n",
        ]
    )


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data", "multipart/form-data; boundary=", 'multipart/form-data; boundary=""'],
)
def test_a_multipart_content_type_without_a_boundary_is_a_400(http, content_type):
    response = http.post(
        "/audio/transcriptions", content=multipart(b"a.wav"), headers={"Content-Type": content_type}
    )
    error = assert_error(response, 400, None)
    assert "boundary" in error["message"]


@pytest.mark.parametrize(
    ("filename", "reason"),
    [(b"\xff\xfe.wav", "not UTF-8"), (b"..", "'..' names no file"), (b".", "'.' names no file")],
)
def test_a_file_part_whose_name_cannot_be_read_is_a_400_naming_the_file(http, filename, reason):
    response = http.post(
        "/audio/transcriptions",
        content=multipart(filename),
        headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
    )
    error = assert_error(response, 400, "file")
    assert "Invalid file name for 'file'" in error["message"]
    assert reason in error["message"]


def test_a_file_part_cut_short_is_still_reported_as_missing(http):
    body = multipart(b"a.wav").rsplit(b"\r\n--XyZ--", 1)[0]  # no closing delimiter
    response = http.post(
        "/audio/transcriptions",
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
    )
    error = assert_error(response, 400, "file")
    assert error["message"] == "Missing required parameter: 'file'."


def test_a_part_header_too_large_for_the_parser_is_a_400(http):
    response = http.post(
        "/audio/translations",
        content=multipart(b"a" * 20_000 + b".wav"),
        headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
    )
    error = assert_error(response, 400, None)
    assert "multipart/form-data" in error["message"]


def test_a_form_in_another_charset_than_utf8_is_a_400(http):
    response = http.post(
        "/audio/transcriptions",
        content="model=local/whisper-base&prompt=caf\xe9".encode("latin-1"),
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=latin-1"},
    )
    error = assert_error(response, 400, None)
    assert "UTF-8" in error["message"]


def chat(http, raw: bytes) -> httpx.Response:
    return http.post("/chat/completions", content=raw, headers={"Content-Type": "application/json"})


def chat_body(**fields) -> bytes:
    body = {"model": "local/gemma-3-270m", "messages": [{"role": "user", "content": "hi"}]}
    return json.dumps({**body, **fields}).encode()


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"a":' * 50_000])
@pytest.mark.parametrize("path", ["/chat/completions", "/audio/speech"])
def test_json_nested_past_the_parsers_recursion_is_a_400(http, raw, path):
    response = http.post(path, content=raw, headers={"Content-Type": "application/json"})
    error = assert_error(response, 400, None)
    assert "nested too deeply" in error["message"]


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_not_json(http, constant):
    raw = chat_body(temperature=1).replace(b'"temperature": 1', b'"temperature": ' + constant)
    error = assert_error(chat(http, raw), 400, None)
    assert error["message"].startswith("We could not parse the JSON body")
    speech = b'{"model": "local/piper", "input": "hi", "voice": "alloy", "speed": %s}' % constant
    response = http.post("/audio/speech", content=speech)
    assert_error(response, 400, None)


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [10**30, 2**31])
def test_a_token_budget_past_32_bits_is_a_400_naming_it(http, name, value):
    error = assert_error(
        chat(http, chat_body(**{name: value})), 400, name, "integer_above_max_value"
    )
    assert "2147483647" in error["message"]


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "user", "content": "\udfff"}], "messages[0].content"),
        (
            [{"role": "user", "content": [{"type": "text", "text": "ok \ud800 then"}]}],
            "messages[0].content[0].text",
        ),
        (
            [{"role": "system", "content": "fine"}, {"role": "user", "content": "x\udc00"}],
            "messages[1].content",
        ),
    ],
)
def test_a_lone_surrogate_is_a_400_naming_the_string(http, messages, param):
    raw = chat_body(messages=messages)
    assert b"\\ud" in raw  # sent as JSON's \\u escape, the only way to write one
    error = assert_error(chat(http, raw), 400, param, "invalid_value")
    assert "not valid Unicode" in error["message"]


def test_a_lone_surrogate_in_stop_names_it(http):
    assert_error(chat(http, chat_body(stop=["ok", "\udfff"])), 400, "stop[1]", "invalid_value")


def test_an_escaped_surrogate_pair_is_ordinary_text(http):
    raw = chat_body(model="nobody/none", messages=[{"role": "user", "content": "smile \U0001f600"}])
    assert b"\\ud83d\\ude00" in raw
    # Past validation (the emoji is one valid character) to the model lookup.
    assert chat(http, raw).json()["error"]["code"] == "model_not_found"
