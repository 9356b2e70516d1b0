"""Loading the model catalog, and clear errors for bad catalog files."""

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings

from core.errors import OpenAIError
from gateway.catalog import CatalogError, load_catalog

MINIMAL = """
[models."local/whisper-base"]
kind = "transcription"
provider = "whisper"
target = "packaged:whisper-base"
price = { per_audio_minute = 0.006 }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return path


def test_default_catalog_has_the_documented_ids():
    models = load_catalog(settings.AROUTER_CATALOG).models
    for model_id in (
        "openai/whisper-large-v3",
        "openai/whisper-large-v3-turbo",
        "openai/tts-1",
        "openai/tts-1-hd",
        "openai/gpt-5.4-audio-preview",
        "local/whisper-base",
        "local/whisper-tiny.en",
        "local/piper",
        "local/gemma-3-270m",
        "local/audio-chat",
        # OpenAI's own names, so code written for OpenAI needs only base_url changed.
        "whisper-1",
        "gpt-4o-transcribe",
        "gpt-4o-mini-transcribe",
        "tts-1",
        "tts-1-hd",
        "gpt-4o-mini-tts",
        "gpt-4o-audio-preview",
        "gpt-realtime",
    ):
        assert model_id in models
    assert models["whisper-1"].route_id == "local/whisper-base"
    assert models["gpt-4o-mini-tts"].route_id == "local/piper"
    assert models["gpt-realtime"].route_id == "local/audio-chat"
    assert models["openai/whisper-large-v3"].route_id == "local/whisper-base"
    assert models["openai/tts-1-hd"].pricing.per_million_characters == Decimal(30)


def test_alias_inherits_route_and_modalities(tmp_path):
    catalog = load_catalog(
        write(tmp_path, MINIMAL + '\n[models."a/b"]\nalias_of = "local/whisper-base"\n')
    )
    alias = catalog.models["a/b"]
    assert (alias.kind, alias.provider, alias.target) == (
        "transcription",
        "whisper",
        "packaged:whisper-base",
    )
    assert alias.pricing == catalog.models["local/whisper-base"].pricing
    assert (alias.alias_of, alias.served_by) == ("local/whisper-base", "local")


def test_resolve_checks_kind(tmp_path):
    catalog = load_catalog(write(tmp_path, MINIMAL))
    assert catalog.resolve("local/whisper-base", "transcription").id == "local/whisper-base"
    with pytest.raises(OpenAIError) as wrong_kind:
        catalog.resolve("local/whisper-base", "speech")
    assert (wrong_kind.value.status, wrong_kind.value.param) == (400, "model")
    with pytest.raises(OpenAIError) as missing:
        catalog.resolve("nope", "speech")
    assert (missing.value.status, missing.value.code) == (404, "model_not_found")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("this is = = not toml", "not valid TOML"),
        ("[other]\nx = 1\n", "at least one model"),
        (
            MINIMAL.replace('provider = "whisper"', 'provider = "magic"'),
            "`provider` must be one of",
        ),
        (MINIMAL.replace('kind = "transcription"', 'kind = "dance"'), "`kind` must be one of"),
        (MINIMAL.replace("0.006", '"cheap"'), "is not a number"),
        (MINIMAL.replace("0.006", "-1"), "is negative"),
        (MINIMAL.replace("per_audio_minute", "per_fortnight"), "unknown price fields"),
        (MINIMAL + '\n[models."x"]\nalias_of = "missing/model"\n', "is not a non-alias model"),
        (MINIMAL + 'input_modalities = ["smell"]\n', "modalities must be"),
        (MINIMAL.replace('target = "packaged:whisper-base"', ""), "`target` must name"),
        (MINIMAL + 'fallbacks = ["missing/model"]\n', "fallback 'missing/model'"),
        (
            MINIMAL.replace('provider = "whisper"', 'provider = "upstream"\nupstream = "ghost"'),
            "`upstream` must name",
        ),
    ],
)
def test_bad_catalogs_fail_with_a_clear_message(tmp_path, text, complaint):
    path = write(tmp_path, text)
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert str(path) in str(caught.value)
    assert complaint in str(caught.value)


def test_missing_catalog_file(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "absent.toml")


def test_upstream_table_parsed_without_exposing_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-secret")
    text = (
        '[upstreams.acme]\nbase_url = "http://127.0.0.1:9/v1/"\napi_key_env = "TEST_UPSTREAM_KEY"\n'
        + MINIMAL.replace('provider = "whisper"', 'provider = "upstream"\nupstream = "acme"')
    )
    catalog = load_catalog(write(tmp_path, text))
    upstream = catalog.upstreams["acme"]
    assert upstream.base_url == "http://127.0.0.1:9/v1"
    assert upstream.api_key() == "sk-secret"
    assert catalog.models["local/whisper-base"].served_by == "acme"  # the name, not the URL


def test_no_upstream_may_be_called_local(tmp_path):
    # `served_by: "local"` means this process's engines; an upstream of that name would lie.
    text = '[upstreams.local]\nbase_url = "http://127.0.0.1:9/v1"\n' + MINIMAL
    with pytest.raises(CatalogError, match=r"\[upstreams.local\].*names the local engines"):
        load_catalog(write(tmp_path, text))


def test_bad_catalog_stops_start_up(tmp_path):
    path = write(tmp_path, "not toml at all [")
    env = dict(os.environ, AROUTER_CATALOG=str(path), DJANGO_SETTINGS_MODULE="arouter.settings")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"Model catalog {path} is not valid TOML" in result.stderr
