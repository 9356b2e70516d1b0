"""Loading the model catalog, and clear errors for bad catalog files."""

import os
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings

from core.errors import OpenAIError
from gateway.catalog import CatalogError, Lifecycle, load_catalog

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


# --- lifecycle: deprecated, shutdown_date, successor, retired -------------------------------

LIFECYCLE = (
    MINIMAL
    + """
[models."local/piper"]
kind = "speech"
provider = "piper"
target = "packaged:en_US-joe-medium"

[models."old/stt"]
alias_of = "local/whisper-base"
deprecated = 2024-01-10
shutdown_date = 2024-07-01
successor = "local/whisper-base"

[models."older/stt"]
alias_of = "local/whisper-base"
retired = true
successor = "old/stt"

[models."gone/stt"]
alias_of = "local/whisper-base"
shutdown_date = "2024-03-01"

[models."sunset/stt"]
alias_of = "local/whisper-base"
deprecated = 2025-05-01
shutdown_date = 2999-12-31
successor = "local/whisper-base"
"""
)


def test_lifecycle_fields_are_read_as_dates(tmp_path):
    models = load_catalog(write(tmp_path, LIFECYCLE)).models
    old = models["old/stt"].lifecycle
    assert (old.deprecated, old.shutdown_date) == (date(2024, 1, 10), date(2024, 7, 1))
    assert (old.successor, old.retired) == ("local/whisper-base", False)
    assert models["gone/stt"].lifecycle.shutdown_date == date(2024, 3, 1)  # an ISO string
    assert models["local/whisper-base"].lifecycle == Lifecycle()


def test_a_model_past_its_shutdown_date_resolves_to_its_successor(tmp_path):
    catalog = load_catalog(write(tmp_path, LIFECYCLE))
    served = catalog.resolve("old/stt", "transcription")
    assert served.id == served.route_id == "local/whisper-base"  # what the ledger records
    assert served.substitution.requested == "old/stt"
    assert served.notice_headers == {
        "Warning": '299 - "The model `old/stt` was retired on 2024-07-01; its successor '
        '`local/whisper-base` served this request."'
    }


def test_successors_are_followed_down_the_chain(tmp_path):
    served = load_catalog(write(tmp_path, LIFECYCLE)).resolve("older/stt", "transcription")
    assert (served.id, served.substitution.requested) == ("local/whisper-base", "older/stt")
    assert "`older/stt` was retired; its successor" in served.substitution.notice  # no date


def test_a_model_before_its_shutdown_date_is_served_as_itself(tmp_path):
    served = load_catalog(write(tmp_path, LIFECYCLE)).resolve("sunset/stt", "transcription")
    assert (served.id, served.substitution, served.notice_headers) == ("sunset/stt", None, {})


def test_a_retired_model_without_successor_is_a_404_saying_so(tmp_path):
    with pytest.raises(OpenAIError) as caught:
        load_catalog(write(tmp_path, LIFECYCLE)).resolve("gone/stt", "transcription")
    error = caught.value
    assert (error.status, error.code, error.param) == (404, "model_not_found", "model")
    assert error.message.startswith("The model `gone/stt` was retired on 2024-03-01 and no")


def test_the_kind_is_checked_before_the_retirement(tmp_path):
    with pytest.raises(OpenAIError) as caught:
        load_catalog(write(tmp_path, LIFECYCLE)).resolve("gone/stt", "speech")
    assert (caught.value.status, caught.value.code) == (400, "model_not_supported")


TINY = """
[models."tiny"]
kind = "transcription"
provider = "whisper"
target = "packaged:whisper-tiny.en"
"""


def test_an_alias_inherits_its_bases_lifecycle_field_by_field(tmp_path):
    retired_base = MINIMAL + 'retired = true\nsuccessor = "tiny"\n' + TINY
    text = (
        retired_base
        + LIFECYCLE.removeprefix(MINIMAL)
        + '[models."plain"]\nalias_of = "local/whisper-base"\n'
    )
    catalog = load_catalog(write(tmp_path, text))
    assert catalog.resolve("plain", "transcription").id == "tiny"  # the base's successor
    sunset = catalog.models["sunset/stt"].lifecycle
    assert (sunset.retired, sunset.successor) == (True, "local/whisper-base")  # its own


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ('successor = "nobody"', "successor 'nobody' is not a transcription model"),
        ('successor = "local/piper"', "successor 'local/piper' is not a transcription model"),
        ("successor = 3", "`successor` must name a model"),
        ('retired = "yes"', "`retired` must be true or false"),
        ('shutdown_date = "soon"', "`shutdown_date` must be a date"),
        ("deprecated = 2024-01-01T10:00:00", "`deprecated` must be a date"),
        ('successor = "older/stt"', "successors go round in a circle"),
    ],
)
def test_bad_lifecycle_fields_fail_with_a_clear_message(tmp_path, fields, complaint):
    # Set on the base; the last makes a circle: base -> older/stt -> old/stt -> base.
    text = MINIMAL + fields + "\n" + LIFECYCLE.removeprefix(MINIMAL)
    with pytest.raises(CatalogError) as caught:
        load_catalog(write(tmp_path, text))
    assert complaint in str(caught.value)


def test_an_alias_may_set_only_its_lifecycle_beside_price_and_description(tmp_path):
    text = MINIMAL + '\n[models."a"]\nalias_of = "local/whisper-base"\nupstream = "x"\n'
    with pytest.raises(CatalogError, match="price, description and its lifecycle"):
        load_catalog(write(tmp_path, text))
