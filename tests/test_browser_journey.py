"""A new user's whole journey in Chromium: sign up, make a key and copy it, transcribe a
file, synthesize speech and hear it play, talk through the fake microphone, then find all
three calls with their cost on the usage page and in its CSV export; all of it under the
pages' Content-Security-Policy without a single violation.

One test, because each step builds on the last, as it does for a person; screenshots of
every page land in test-artifacts/screenshots/.
"""

import csv
import io

import numpy as np
import pytest
from openai import OpenAI

from gateway.audio.encode import wav_file
from tests.browser import (
    CHROMIUM_ARGS,
    chromium_or_skip,
    collect_csp_violations,
    fake_microphone_args,
    screenshot,
    wait_until,
)
from tests.chat_speech import heard_error_rate, speak, word_error_rate
from tests.speech_fixtures import *  # noqa: F403
from tests.speech_fixtures import ENGLISH_TEXT, PIPER_RATE

QUESTION = "What is the capital of France?"
STEP_TIMEOUT_MS = 180_000


@pytest.fixture
def question_wav(tmp_path):
    """The spoken question between short silences, as the fake microphone's file."""
    silence = np.zeros(PIPER_RATE // 2, dtype=np.int16)
    pcm = np.concatenate([silence, speak(QUESTION), silence, silence])
    path = tmp_path / "question.wav"
    path.write_bytes(wav_file(pcm, PIPER_RATE))
    return path, len(pcm) / PIPER_RATE


@pytest.fixture
def browser_page(arouter_server, transactional_db, question_wav):
    from playwright.sync_api import sync_playwright

    executable = chromium_or_skip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=[*CHROMIUM_ARGS, *fake_microphone_args(question_wav[0])],
        )
        context = browser.new_context(base_url=arouter_server.url)
        context.grant_permissions(
            ["clipboard-read", "clipboard-write", "microphone"], origin=arouter_server.url
        )
        violations = collect_csp_violations(context)
        page = context.new_page()
        page.set_default_timeout(STEP_TIMEOUT_MS)
        yield page, violations
        browser.close()


def sign_up(page) -> None:
    page.goto("/signup/")
    screenshot(page, "01-signup")
    page.fill("#id_username", "newcomer")
    page.fill("#id_email", "newcomer@example.com")
    page.fill("#id_password1", "a-long-pass-phrase-1")
    page.fill("#id_password2", "a-long-pass-phrase-1")
    page.click("button[type=submit]")
    page.wait_for_url("**/teams/*/")
    screenshot(page, "02-team")


def log_out_and_back_in(page) -> None:
    page.click("text=Log out")
    page.wait_for_url("**/accounts/login/")
    page.fill("#id_username", "newcomer")
    page.fill("#id_password", "a-long-pass-phrase-1")
    page.click("button[type=submit]")
    page.wait_for_url("**/teams/*/")  # the only team: straight to it


def create_and_copy_key(page, server_url: str) -> str:
    page.click("nav.team-nav >> text=Keys")
    page.fill("#id_name", "browser")
    page.fill("#id_requests_per_minute", "600")
    page.click("text=Create key")
    shown = page.inner_text("#new-key").strip()
    page.click("#copy-key")
    page.wait_for_selector("#copy-key:has-text('Copied')")
    copied = page.evaluate("navigator.clipboard.readText()")
    screenshot(page, "03-keys")
    assert copied == shown
    assert shown.startswith("lr_live_")
    models = OpenAI(base_url=f"{server_url}/v1", api_key=copied, max_retries=0).models.list()
    assert any(model.id == "local/whisper-base" for model in models.data)
    # Shown once: reloading (which posts the same form again) shows it no more and makes
    # no second key.
    page.reload()
    assert page.query_selector("#new-key") is None
    assert page.locator("#keys tbody tr", has_text="browser").count() == 1
    page.click("nav.team-nav >> text=Keys")
    assert page.query_selector("#new-key") is None
    return copied


def transcribe(page, english_wav_bytes: bytes) -> None:
    page.click("nav.team-nav >> text=Playground")
    page.set_input_files(
        "#stt-file", {"name": "speech.wav", "mimeType": "audio/wav", "buffer": english_wav_bytes}
    )
    page.click("#stt-submit")
    page.wait_for_selector("#stt-cost:has-text('Cost')")
    heard = page.inner_text("#stt-text")
    screenshot(page, "04-transcribe")
    # By characters, word breaks removed: Whisper writes "sea shells by the sea shore" as
    # "seashells by the seashore", four word errors in twenty but no character error.
    assert heard_error_rate(ENGLISH_TEXT, heard) <= 0.2, heard
    # verbose_json with word timestamps: one highlighted-in-time span per word.
    assert page.locator("#stt-text span[data-start]").count() >= 15


def record_and_transcribe(page, seconds: float) -> None:
    """MediaRecorder on the fake microphone, uploaded as the browser recorded it (webm)."""
    page.set_input_files("#stt-file", [])
    page.click("#stt-record")
    page.wait_for_selector("#stt-record:has-text('Stop recording')")
    page.wait_for_timeout(int(seconds * 1000))
    page.click("#stt-record")
    page.wait_for_selector("#stt-recorded:has-text('KB recorded')")
    page.select_option("#stt-format", "text")
    page.click("#stt-submit")
    page.wait_for_selector("#stt-cost:has-text('Cost')")
    assert word_error_rate(QUESTION, page.inner_text("#stt-text")) <= 0.5


def synthesize(page) -> None:
    page.click("[data-tab=synthesize]")
    # An API error is shown in plain words, not as JSON.
    page.fill("#tts-text", "")
    page.click("#tts-submit")
    page.wait_for_selector("#tts-error:not([hidden])")
    problem = page.inner_text("#tts-error")
    assert problem
    assert "{" not in problem
    page.fill("#tts-text", "The browser played this sentence while it streamed.")
    assert page.inner_text("#tts-count") == str(
        len("The browser played this sentence while it streamed.")
    )
    page.click("#tts-submit")
    wait_until(
        page,
        "(() => { const a = document.getElementById('tts-audio');"
        " return a.currentTime > 0.5 || a.ended; })()",
        STEP_TIMEOUT_MS,
    )
    page.wait_for_selector("#tts-download:not([hidden])")
    page.wait_for_selector("#tts-cost:has-text('Cost')")
    screenshot(page, "05-synthesize")
    assert page.get_attribute("#tts-download", "download") == "speech.mp3"


def talk(page, seconds: float) -> None:
    page.click("[data-tab=talk]")
    page.click("#chat-talk")
    page.wait_for_selector("#chat-talk:has-text('Stop and send')")
    page.wait_for_timeout(int(seconds * 1000))
    page.click("#chat-talk")
    page.wait_for_selector("#chat-cost:has-text('Cost')")
    wait_until(
        page, "Number(document.getElementById('chat-played').textContent) > 0", STEP_TIMEOUT_MS
    )
    screenshot(page, "06-talk")
    assert page.is_hidden("#chat-error"), page.inner_text("#chat-error")
    heard = page.inner_text("#talk-log .turn.user .text")
    assert word_error_rate(QUESTION, heard) <= 0.5, heard
    assert page.inner_text("#talk-log .turn.assistant .text").strip()


def review_usage(page) -> None:
    page.click("nav.team-nav >> text=Usage")
    rows = page.locator("#usage-table tbody tr")
    endpoints = {rows.nth(i).locator("td").nth(3).inner_text() for i in range(rows.count())}
    screenshot(page, "07-usage")
    assert endpoints == {"/v1/audio/transcriptions", "/v1/audio/speech", "/v1/realtime"}
    assert rows.count() >= 4  # two transcriptions, a speech, a turn (and any refused call)
    with page.expect_download() as download:
        page.click("#export-csv")
    exported = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert len(exported) == rows.count()
    assert {row["endpoint"] for row in exported} == endpoints
    assert all(row["key"] == "browser" for row in exported)
    assert sum(float(row["cost_usd"]) for row in exported) > 0


def test_a_new_user_transcribes_synthesizes_and_talks_then_reviews_the_bill(
    browser_page, arouter_server, question_wav, english_wav
):
    page, csp_violations = browser_page
    sign_up(page)
    log_out_and_back_in(page)
    create_and_copy_key(page, arouter_server.url)
    transcribe(page, english_wav.content)
    record_and_transcribe(page, seconds=question_wav[1] - 0.3)
    synthesize(page)
    talk(page, seconds=question_wav[1] - 0.3)
    review_usage(page)
    assert csp_violations == []
