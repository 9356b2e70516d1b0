"""The playground's hands-free Talk mode in Chromium, with a fake microphone fed a WAV file.

The file holds a spoken request for a story, a long silence in which the reply starts
playing, a second question spoken over that reply (barge-in), then silence. Only the Talk
button is pressed: the server's VAD finds both turns, the first reply stops where the user
spoke and is truncated to what was played, the second turn is answered, and every turn
shows what it cost; the microphone's level meter moved. All under the pages' CSP.

Waits are on the page's state (generous, for a slow 2-core machine), never fixed sleeps.
The one timing the file fixes is the gap before the second question: the first reply must
have started by then (the engines are warmed first, so it starts within a few seconds)
and still be playing (the offline model tells stories of a minute or so).
"""

import concurrent.futures

import numpy as np
import pytest
from openai import OpenAI

from accounts.models import ApiKey, Membership, Team
from gateway.audio.encode import wav_file
from tests.browser import (
    CHROMIUM_ARGS,
    chromium_or_skip,
    collect_csp_violations,
    fake_microphone_args,
    screenshot,
    wait_until,
)
from tests.chat_speech import speak, word_error_rate
from tests.speech_fixtures import PIPER_RATE
from usage.models import UsageRecord

pytestmark = pytest.mark.engines

STORY = "Tell me a story about a little red fox who lives in the forest."
BARGE_IN = "Wait. What is the capital of France?"
LEAD_SECONDS = 0.6
# From the end of the story request to the second question. The first reply must start
# within it (a few seconds on an idle 2-core machine; ten or more on a busy one) and still
# be playing at its end: the offline model tells such stories for about a minute.
GAP_SECONDS = 30
TAIL_SECONDS = 60  # silence after the second question (the fake device loops the file)
TURN_TIMEOUT_MS = 300_000
PASSWORD = "a-long-pass-phrase-1"

# Records the realtime events the page gets and sends (types, item ids, times), to show
# what happened when a wait runs out. Comes in through the DevTools protocol, so the page's
# policy does not apply to it.
_SOCKET_LOG = """
window.__talkEvents = [];
const note = (way, data) => {
  try {
    const event = JSON.parse(data);
    if (event.type.endsWith(".delta") || event.type === "input_audio_buffer.append") return;
    window.__talkEvents.push([Math.round(performance.now()), way, event.type,
      event.item_id || event.item?.id || event.response?.id || "", event.response?.status || ""]);
  } catch {}
};
const NativeSocket = window.WebSocket;
window.WebSocket = class extends NativeSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (message) => note("in", message.data));
  }
  send(data) {
    note("out", data);
    super.send(data);
  }
};
"""


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(PIPER_RATE * seconds), dtype=np.int16)


@pytest.fixture
def conversation_wav(tmp_path):
    """What the fake microphone hears (Chromium's file capture resamples any rate)."""
    pcm = np.concatenate(
        [
            silence(LEAD_SECONDS),
            speak(STORY),
            silence(GAP_SECONDS),
            speak(BARGE_IN),
            silence(TAIL_SECONDS),
        ]
    )
    path = tmp_path / "conversation.wav"
    path.write_bytes(wav_file(pcm, PIPER_RATE))
    return path


@pytest.fixture
def talker(transactional_db, arouter_server):
    """A team's owner with a key to bill; the engines the cascade uses already loaded, so
    the first reply starts as soon as later ones do."""
    from django.contrib.auth.models import User

    user = User.objects.create_user("talker", "talker@example.com", PASSWORD)
    team = Team.objects.create(name="talkers")
    Membership.objects.create(team=team, user=user, role=Membership.Role.OWNER)
    issued = ApiKey.issue(team, name="talk", created_by=user)
    client = OpenAI(base_url=f"{arouter_server.url}/v1", api_key=issued.raw, max_retries=0)
    client.audio.transcriptions.create(
        model="local/whisper-base", file=("warm.wav", wav_file(speak(BARGE_IN), PIPER_RATE))
    )
    client.chat.completions.create(
        model="local/smollm2-135m-instruct",
        messages=[{"role": "user", "content": "Hello"}],
        max_tokens=2,
    )
    return team, issued.api_key


@pytest.fixture
def talk_page(talker, arouter_server, conversation_wav):
    from playwright.sync_api import sync_playwright

    executable = chromium_or_skip()
    team, _ = talker
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=[*CHROMIUM_ARGS, *fake_microphone_args(conversation_wav)],
        )
        context = browser.new_context(base_url=arouter_server.url)
        context.grant_permissions(["microphone"], origin=arouter_server.url)
        violations = collect_csp_violations(context)
        context.add_init_script(_SOCKET_LOG)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto("/accounts/login/")
        page.fill("#id_username", "talker")
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"**/teams/{team.pk}/")
        page.goto(f"/teams/{team.pk}/playground/")
        page.click("[data-tab=talk]")
        yield page, violations
        browser.close()


def turns(page, role: str) -> list[dict]:
    """The conversation log's entries of one role, as the page holds them."""
    return page.evaluate(
        """(role) => [...document.querySelectorAll(`#talk-log .turn.${role}`)].map((li) => ({
            ...li.dataset,
            text: li.querySelector(".text").textContent,
            note: li.querySelector(".note").textContent,
            cost_text: li.querySelector(".cost").textContent,
            interrupted: li.classList.contains("interrupted"),
        }))""",
        role,
    )


def wait_for_page(page, expression: str, timeout_ms: float = TURN_TIMEOUT_MS) -> None:
    try:
        wait_until(page, expression, timeout_ms)
    except AssertionError:
        screenshot(page, "talk-mode-stuck")
        log = {"user": turns(page, "user"), "assistant": turns(page, "assistant")}
        error = page.inner_text("#chat-error")
        events = "\n".join(map(str, page.evaluate("window.__talkEvents")))
        raise AssertionError(
            f"{expression} never held; error {error!r}; log {log}; events:\n{events}"
        ) from None


def realtime_rows() -> list[UsageRecord]:
    # Another thread: Playwright's loop runs in this one, where the ORM refuses to work.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(
            lambda: list(UsageRecord.objects.filter(endpoint="/v1/realtime").order_by("pk"))
        ).result()


def test_two_turns_hands_free_the_first_reply_interrupted_by_speaking(talk_page):
    page, csp_violations = talk_page
    page.click("#talk-mode")
    page.wait_for_selector("#talk-mode:has-text('Stop talking')")

    # The level meter follows the voice.
    wait_for_page(page, "document.getElementById('talk-level').value > 0.3", 60_000)

    # The story request is heard and answered, with what hearing it cost.
    wait_for_page(page, "document.querySelectorAll('#talk-log .turn.assistant').length >= 1")
    # The second question is spoken over the reply: it stops, and the server truncated it.
    wait_for_page(
        page,
        "(() => { const a = document.querySelector('#talk-log .turn.assistant');"
        " return a.classList.contains('interrupted') && a.dataset.truncatedMs !== undefined"
        " && a.dataset.cost !== undefined; })()",
    )
    # The second turn is heard and answered, its reply billed.
    wait_for_page(
        page,
        "(() => { const users = document.querySelectorAll('#talk-log .turn.user[data-cost]');"
        " if (users.length < 2) return false;"
        " const reply = document.querySelector("
        "   `#talk-log .turn.assistant[data-answers='${users[1].dataset.itemId}']`);"
        " return !!reply && reply.dataset.cost !== undefined"
        "   && reply.querySelector('.text').textContent.trim().length > 0; })()",
    )
    screenshot(page, "talk-mode")

    users, replies = turns(page, "user"), turns(page, "assistant")
    assert page.is_hidden("#chat-error"), page.inner_text("#chat-error")
    assert word_error_rate(STORY, users[0]["text"]) <= 0.3, users[0]
    assert word_error_rate(BARGE_IN, users[1]["text"]) <= 0.4, users[1]

    first, second = replies[0], replies[1]
    assert first["answers"] == users[0]["itemId"]
    assert second["answers"] == users[1]["itemId"]
    # Both sides in the order they spoke: the reply had begun when the user spoke over it.
    order = page.evaluate(
        "[...document.querySelectorAll('#talk-log .turn')].map((li) => li.dataset.itemId)"
    )
    assert order.index(users[0]["itemId"]) < order.index(first["itemId"])
    assert order.index(first["itemId"]) < order.index(users[1]["itemId"])
    assert order.index(users[1]["itemId"]) < order.index(second["itemId"])
    # Cut where the user spoke: some of it was heard, and the server truncated the item
    # to exactly that.
    assert first["interrupted"]
    assert int(first["truncatedMs"]) == int(first["playedMs"]) > 0, first
    assert first["note"].startswith("(interrupted after"), first
    assert first["text"].strip()

    # Each turn's cost: hearing the user, then the reply and the turn's total.
    for user in users[:2]:
        assert float(user["cost"]) > 0, user
        assert user["cost_text"].startswith("heard $"), user
    for reply, user in ((first, users[0]), (second, users[1])):
        assert float(reply["cost"]) > 0, reply
        assert float(reply["turnCost"]) == pytest.approx(float(reply["cost"]) + float(user["cost"]))
        assert reply["cost_text"].startswith("reply $"), reply
        assert " · turn $" in reply["cost_text"], reply
    assert page.inner_text("#chat-cost").startswith("Cost of this turn: $")

    # The ledger has both heard turns and both responses.
    rows = realtime_rows()
    assert len(rows) >= 4, [(row.model, row.status_code) for row in rows]
    assert all(row.cost > 0 for row in rows[:4])
    assert csp_violations == []
