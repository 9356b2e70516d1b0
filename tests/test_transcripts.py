"""gateway.transcripts: a Transcript in json, text, srt, verbose_json and vtt, exactly."""

import json
from decimal import Decimal

from gateway.providers.base import Segment, Transcript, Word
from gateway.transcripts import billed_seconds, duration_usage, render, timestamp, to_srt, to_vtt


def _segment(index: int, start: float, end: float, text: str, words=()) -> Segment:
    return Segment(
        id=index,
        seek=0,
        start=start,
        end=end,
        text=text,
        tokens=[50364, 440, 50608],
        temperature=0.0,
        avg_logprob=-0.25,
        compression_ratio=1.1,
        no_speech_prob=0.01,
        words=list(words),
    )


WORDS = [Word("Hello", 0.0, 0.5), Word("there.", 0.5, 1.2), Word("Bye.", 3661.5, 3662.25)]
TRANSCRIPT = Transcript(
    text="Hello there. Bye.",
    language="english",
    duration=3662.4,
    segments=[
        _segment(0, 0.0, 1.2, " Hello there.", WORDS[:2]),
        _segment(1, 3661.5, 3662.25, " Bye.", WORDS[2:]),
    ],
    words=WORDS,
)


def test_timestamps_have_hours_and_milliseconds():
    assert timestamp(0, ",") == "00:00:00,000"
    assert timestamp(3661.5, ",") == "01:01:01,500"
    assert timestamp(59.9996, ".") == "00:01:00.000"
    assert timestamp(-0.01, ".") == "00:00:00.000"


def test_srt_is_numbered_cues_with_comma_milliseconds():
    assert to_srt(TRANSCRIPT) == (
        "1\n00:00:00,000 --> 00:00:01,200\nHello there.\n\n"
        "2\n01:01:01,500 --> 01:01:02,250\nBye.\n\n"
    )


def test_vtt_has_its_header_and_dot_milliseconds():
    assert to_vtt(TRANSCRIPT) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:01.200\nHello there.\n\n"
        "01:01:01.500 --> 01:01:02.250\nBye.\n\n"
    )


def test_cue_text_cannot_break_the_cue_structure():
    tricky = Transcript("a b", "english", 2.0, [_segment(0, 0, 1, " a\n\n--> b")])
    assert to_srt(tricky) == "1\n00:00:00,000 --> 00:00:01,000\na\n-> b\n\n"


def test_json_is_text_and_duration_usage():
    usage = duration_usage(billed_seconds(TRANSCRIPT), Decimal("0.36630000"))
    body = json.loads(render(TRANSCRIPT, "json", "transcribe", usage).content)
    assert body == {
        "text": "Hello there. Bye.",
        "usage": {"type": "duration", "seconds": 3663, "cost": 0.3663},
    }


def test_translation_json_is_text_only():
    body = json.loads(render(TRANSCRIPT, "json", "translate", {"type": "duration"}).content)
    assert body == {"text": "Hello there. Bye."}


def test_verbose_json_has_every_segment_field_and_words():
    response = render(TRANSCRIPT, "verbose_json", "transcribe", {"type": "duration"})
    body = json.loads(response.content)
    assert list(body) == ["task", "language", "duration", "text", "segments", "words", "usage"]
    assert (body["task"], body["language"], body["duration"]) == ("transcribe", "english", 3662.4)
    assert body["segments"][1] == {
        "id": 1,
        "seek": 0,
        "start": 3661.5,
        "end": 3662.25,
        "text": " Bye.",
        "tokens": [50364, 440, 50608],
        "temperature": 0.0,
        "avg_logprob": -0.25,
        "compression_ratio": 1.1,
        "no_speech_prob": 0.01,
    }
    assert body["words"][0] == {"word": "Hello", "start": 0.0, "end": 0.5}


def test_verbose_json_without_word_timestamps_has_no_words_key():
    plain = Transcript(TRANSCRIPT.text, "english", 2.0, TRANSCRIPT.segments, words=None)
    body = json.loads(render(plain, "verbose_json", "translate").content)
    assert "words" not in body
    assert "usage" not in body
    assert body["task"] == "translate"


def test_text_formats_are_plain_text():
    for response_format in ("text", "srt", "vtt"):
        response = render(TRANSCRIPT, response_format, "transcribe")
        assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert render(TRANSCRIPT, "text", "transcribe").content == b"Hello there. Bye.\n"


def test_billed_seconds_round_up_but_ignore_float_noise():
    assert billed_seconds(Transcript("", "english", 4.2, [])) == 5
    assert billed_seconds(Transcript("", "english", 5.0000001, [])) == 5


def test_token_usage_counts_audio_heard_and_text_tokens_decoded():
    from dataclasses import replace

    from gateway.catalog import catalog
    from gateway.transcripts import token_usage
    from tests.openai_contract import assert_matches

    whisper = catalog().get("local/whisper-base")  # 50 audio tokens a second
    usage = token_usage(TRANSCRIPT, whisper, Decimal("0.367"))
    assert_matches("TranscriptTextUsageTokens", usage, extras=["cost"])
    # 3662.4 s x 50; each segment holds one text token between two timestamps.
    assert usage == {
        "type": "tokens",
        "input_tokens": 183_120,
        "input_token_details": {"audio_tokens": 183_120},
        "output_tokens": 2,
        "total_tokens": 183_122,
        "cost": 0.367,
    }
    # Custom rate in the catalog; a transcript without token ids counts 4 characters each.
    slower = replace(whisper, options={"audio_tokens_per_second": 12.5})
    untokenized = replace(TRANSCRIPT, segments=[replace(s, tokens=[]) for s in TRANSCRIPT.segments])
    usage = token_usage(untokenized, slower, Decimal(0))
    assert (usage["input_tokens"], usage["output_tokens"]) == (45_780, 5)  # 17 chars / 4


# --- diarized_json and logprobs -------------------------------------------------------------


def _spoken(index: int, start: float, end: float, text: str, speaker: str | None) -> Segment:
    from dataclasses import replace

    return replace(_segment(index, start, end, text), speaker=speaker)


DIARIZED = Transcript(
    text="Thanks for calling. Hi, I need help.",
    language="english",
    duration=12.84,
    segments=[
        _spoken(0, 0.0, 5.2, "Thanks for calling.", "agent"),
        _spoken(1, 5.2, 12.8, " Hi, I need help.", "A"),
        _spoken(2, 12.8, 12.84, "", None),
    ],
)


def test_diarized_json_is_openais_object_from_any_transcript_with_speakers():
    from tests.openai_contract import assert_matches

    usage = duration_usage(billed_seconds(DIARIZED), Decimal("0.0013"))
    response = render(DIARIZED, "diarized_json", "transcribe", usage)
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert_matches("CreateTranscriptionResponseDiarizedJson", body, extras=["usage.cost"])
    assert list(body) == ["task", "duration", "text", "segments", "usage"]
    assert (body["task"], body["duration"], body["text"]) == ("transcribe", 12.84, DIARIZED.text)
    assert body["segments"] == [
        {"type": "transcript.text.segment", "id": "seg_000", "start": 0.0, "end": 5.2,
         "text": "Thanks for calling.", "speaker": "agent"},
        {"type": "transcript.text.segment", "id": "seg_001", "start": 5.2, "end": 12.8,
         "text": "Hi, I need help.", "speaker": "A"},
        # A segment the provider could not attribute says so rather than inventing "A".
        {"type": "transcript.text.segment", "id": "seg_002", "start": 12.8, "end": 12.84,
         "text": "", "speaker": "unknown"},
    ]  # fmt: skip
    assert body["usage"] == {"type": "duration", "seconds": 13, "cost": 0.0013}


def test_json_carries_logprobs_only_when_the_transcript_has_them():
    from dataclasses import replace

    from gateway.providers.base import TokenLogprob
    from tests.openai_contract import assert_matches

    tokens = [
        TokenLogprob(" Hello", -0.01, [32, 72, 101, 108, 108, 111]),
        TokenLogprob(".", -0.5, [46]),
    ]
    usage = {"type": "duration", "seconds": 4, "cost": 0.0}
    body = json.loads(
        render(replace(TRANSCRIPT, logprobs=tokens), "json", "transcribe", usage).content
    )
    assert_matches("CreateTranscriptionResponseJson", body, extras=["usage.cost"])
    assert list(body) == ["text", "logprobs", "usage"]
    assert body["logprobs"] == [
        {"token": " Hello", "logprob": -0.01, "bytes": [32, 72, 101, 108, 108, 111]},
        {"token": ".", "logprob": -0.5, "bytes": [46]},
    ]
    assert "logprobs" not in json.loads(render(TRANSCRIPT, "json", "transcribe", usage).content)
    # Asked but empty (silence): an empty list, as asked, not a missing field.
    silent = replace(TRANSCRIPT, text="", segments=[], logprobs=[])
    assert json.loads(render(silent, "json", "transcribe").content)["logprobs"] == []


def test_refusals_for_what_a_model_cannot_produce_are_openais_words():
    from gateway.transcripts import cannot_diarize, format_not_supported, logprobs_not_supported

    error = format_not_supported("gpt-4o-transcribe", "verbose_json", ["json", "text"])
    assert error.body()["error"] == {
        "message": "response_format 'verbose_json' is not compatible with model "
        "'gpt-4o-transcribe'. Use 'json' or 'text' instead.",
        "type": "invalid_request_error",
        "param": "response_format",
        "code": "unsupported_value",
    }
    assert cannot_diarize("local/whisper-base").message == (
        "response_format 'diarized_json' is not compatible with model 'local/whisper-base'. "
        "Use 'json', 'text', 'srt', 'verbose_json' or 'vtt' instead."
    )
    assert (logprobs_not_supported("x").param, logprobs_not_supported("x").status) == (
        "include[]",
        400,
    )
