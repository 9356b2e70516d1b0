"""Chromium from Debian, driven by Playwright's Python package (no `playwright install`)."""

import os
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("AROUTER_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_or_skip() -> str:
    """Chromium's path; missing is a skip locally and a failure under CI."""
    path = shutil.which(CHROMIUM) or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if path is None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        )
    return path


def fake_microphone_args(wav: Path) -> list[str]:
    """Chromium's fake capture device, fed from a 16-bit PCM wav (it loops the file)."""
    return [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
    ]


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


# Reports each Content-Security-Policy violation of every document to the test. An init
# script and a binding come in through the DevTools protocol, so the policy does not apply
# to them (a <script> the test added would be refused like any other inline script).
_CSP_WATCH = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__arouterCspViolation(
    `${event.effectiveDirective} refused ${event.blockedURI || "inline"}` +
      ` in ${event.sourceFile || event.documentURI}:${event.lineNumber}`
  );
});
"""


def collect_csp_violations(context) -> list[str]:
    """Every CSP violation in the context's pages from now on: `securitypolicyviolation`
    events and Chromium's console reports of refused content."""
    found: list[str] = []
    context.expose_binding("__arouterCspViolation", lambda _source, text: found.append(text))
    context.add_init_script(_CSP_WATCH)

    def on_console(message) -> None:
        if "Content Security Policy" in message.text:
            found.append(f"console: {message.text}")

    context.on("console", on_console)
    return found


def wait_until(page, expression: str, timeout_ms: float) -> None:
    """Wait for a JavaScript expression to be true. Not page.wait_for_function: it runs its
    predicate through eval(), which the pages' policy (no 'unsafe-eval') refuses;
    page.evaluate comes in through the DevTools protocol, outside the policy."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout_ms / 1000:.0f} s: {expression}")
        page.wait_for_timeout(100)
