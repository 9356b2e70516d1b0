"""Chromium from Debian, driven by Playwright's Python package (no `playwright install`)."""

import os
import shutil
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
