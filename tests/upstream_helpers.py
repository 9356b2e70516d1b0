"""Catalogs that route models to loopback upstreams, swapped in and out for a test."""

import contextlib
import time
from pathlib import Path

from django.test import override_settings

from gateway.catalog import reload_catalog
from gateway.providers import forget_providers
from gateway.providers.upstream_client import forget_clients
from usage.models import UsageRecord


@contextlib.contextmanager
def catalog_from(path: Path, text: str):
    """Serve the catalog `text` (written to `path`) until the block ends."""
    path.write_text(text)
    with override_settings(AROUTER_CATALOG=path):
        reload_catalog()
        forget_providers()
        forget_clients()
        try:
            yield
        finally:
            forget_providers()
            forget_clients()
    reload_catalog()


def upstream_table(name: str, base_url: str, key_env: str = "", **options) -> str:
    lines = [f"[upstreams.{name}]", f'base_url = "{base_url}"']
    if key_env:
        lines.append(f'api_key_env = "{key_env}"')
    for option, value in options.items():
        lines.append(f"{option} = {_toml(value)}")
    return "\n".join(lines) + "\n\n"


def model_table(
    model_id: str, kind: str, upstream: str, target: str, provider: str = "upstream", **fields
) -> str:
    lines = [
        f'[models."{model_id}"]',
        f'kind = "{kind}"',
        f'provider = "{provider}"',
        f'upstream = "{upstream}"',
        f'target = "{target}"',
    ]
    for name, value in fields.items():
        lines.append(f"{name} = {_toml(value)}")
    return "\n".join(lines) + "\n\n"


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return str(value)


def record_of(model: str) -> UsageRecord:
    """The model's finished usage row; a stream is billed as it ends, just after its last
    byte, so this waits for it (up to 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return UsageRecord.objects.finished().get(model=model)
        except UsageRecord.DoesNotExist:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
