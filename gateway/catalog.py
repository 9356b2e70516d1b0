"""The model catalog: one declarative TOML file naming every model the gateway serves.

Each entry says what the model does (its kind and modalities), who serves it (a provider
from `gateway.providers.PROVIDERS` and that provider's target), and what it costs. Aliases
are explicit entries that borrow another entry's route, so `/v1/models` shows honestly
what really serves an `openai/...` id or one of OpenAI's own names (`whisper-1`, `tts-1`).
"""

import functools
import os
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from core.errors import invalid_param, model_not_found

Kind = Literal["transcription", "speech", "chat"]
KINDS: tuple[Kind, ...] = ("transcription", "speech", "chat")
MODALITIES = ("text", "audio")
DEFAULT_CREATED = 1763856000  # 2025-11-23, when this catalog format was introduced
LOCAL = "local"  # `served_by` of the engines in this process, so no upstream may take it

# Price fields, each in USD per the unit its name gives.
PRICE_FIELDS = (
    "per_audio_minute",
    "per_million_characters",
    "per_million_text_input_tokens",
    "per_million_text_output_tokens",
    "per_million_audio_input_tokens",
    "per_million_audio_output_tokens",
)
DEFAULT_MODALITIES: dict[Kind, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "transcription": (("audio",), ("text",)),
    "speech": (("text",), ("audio",)),
    "chat": (("text",), ("text",)),
}
KIND_VERBS: dict[Kind, str] = {
    "transcription": "transcription and translation",
    "speech": "speech synthesis",
    "chat": "chat completions",
}


class CatalogError(ImproperlyConfigured):
    pass


@dataclass(frozen=True)
class Pricing:
    per_audio_minute: Decimal = Decimal(0)
    per_million_characters: Decimal = Decimal(0)
    per_million_text_input_tokens: Decimal = Decimal(0)
    per_million_text_output_tokens: Decimal = Decimal(0)
    per_million_audio_input_tokens: Decimal = Decimal(0)
    per_million_audio_output_tokens: Decimal = Decimal(0)

    def as_dict(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in PRICE_FIELDS if getattr(self, name)}


@dataclass(frozen=True)
class Upstream:
    """An OpenAI-compatible service models can be routed to."""

    name: str
    base_url: str
    api_key_env: str = ""
    api_key_file: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def api_key(self) -> str:
        if self.api_key_file:
            return Path(self.api_key_file).expanduser().read_text().strip()
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""


@dataclass(frozen=True)
class ModelEntry:
    id: str
    kind: Kind
    provider: str
    target: str
    input_modalities: tuple[str, ...]
    output_modalities: tuple[str, ...]
    pricing: Pricing
    route_id: str  # the non-alias entry whose provider instance serves this id
    alias_of: str | None = None
    upstream: str | None = None
    fallbacks: tuple[str, ...] = ()
    description: str = ""
    owned_by: str = "arouter"
    created: int = DEFAULT_CREATED
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def served_by(self) -> str:
        """Who answers this id, as a client may be told: "local" (an engine in this
        process) or the name of the upstream it is sent to. Provider names, targets (file
        paths, packaged weights) and addresses stay internal."""
        return self.upstream or LOCAL

    def accepts(self, modality: str) -> bool:
        return modality in self.input_modalities

    def produces(self, modality: str) -> bool:
        return modality in self.output_modalities


@dataclass(frozen=True)
class Catalog:
    models: dict[str, ModelEntry]
    upstreams: dict[str, Upstream]

    def get(self, model_id: str) -> ModelEntry:
        try:
            return self.models[model_id]
        except KeyError:
            raise model_not_found(model_id) from None

    def resolve(self, model_id: str, kind: Kind) -> ModelEntry:
        """The entry for a request of `kind`, or the OpenAI error a client should see."""
        entry = self.get(model_id)
        if entry.kind != kind:
            raise invalid_param(
                f"The model `{model_id}` is a {entry.kind} model and does not support "
                f"{KIND_VERBS[kind]}.",
                param="model",
                code="model_not_supported",
            )
        return entry

    def filter(
        self,
        *,
        kind: Kind | None = None,
        input_modality: str | None = None,
        output_modality: str | None = None,
    ) -> list[ModelEntry]:
        return [
            entry
            for entry in self.models.values()
            if (kind is None or entry.kind == kind)
            and (input_modality is None or entry.accepts(input_modality))
            and (output_modality is None or entry.produces(output_modality))
        ]


def _fail(path: Path, where: str, problem: str) -> CatalogError:
    return CatalogError(f"Model catalog {path}: {where}: {problem}")


def _pricing(path: Path, where: str, raw: Any) -> Pricing:
    if raw is None:
        return Pricing()
    if not isinstance(raw, dict):
        raise _fail(path, where, "`price` must be a table")
    unknown = set(raw) - set(PRICE_FIELDS)
    if unknown:
        raise _fail(path, where, f"unknown price fields {sorted(unknown)}; use {PRICE_FIELDS}")
    values = {}
    for name, value in raw.items():
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            raise _fail(path, where, f"price `{name}` is not a number") from None
        if amount < 0:
            raise _fail(path, where, f"price `{name}` is negative")
        values[name] = amount
    return Pricing(**values)


def _modalities(path: Path, where: str, raw: Any, default: tuple[str, ...]) -> tuple[str, ...]:
    if raw is None:
        return default
    if not isinstance(raw, list) or not raw or any(m not in MODALITIES for m in raw):
        raise _fail(path, where, f"modalities must be a non-empty list drawn from {MODALITIES}")
    return tuple(raw)


def _base_entry(path: Path, model_id: str, raw: dict, upstreams: dict) -> ModelEntry:
    from gateway.providers import PROVIDERS, REMOTE_PROVIDERS

    where = f'[models."{model_id}"]'
    kind = raw.get("kind")
    if kind not in KINDS:
        raise _fail(path, where, f"`kind` must be one of {KINDS}, not {kind!r}")
    provider = raw.get("provider")
    if provider not in PROVIDERS:
        raise _fail(path, where, f"`provider` must be one of {sorted(PROVIDERS)}, not {provider!r}")
    target = raw.get("target")
    if not isinstance(target, str) or not target:
        raise _fail(path, where, "`target` must name what the provider serves")
    upstream = raw.get("upstream")
    if provider in REMOTE_PROVIDERS and upstream not in upstreams:
        raise _fail(path, where, f"`upstream` must name an [upstreams.*] table, not {upstream!r}")
    inputs, outputs = DEFAULT_MODALITIES[kind]
    return ModelEntry(
        id=model_id,
        kind=kind,
        provider=provider,
        target=target,
        upstream=upstream,
        input_modalities=_modalities(path, where, raw.get("input_modalities"), inputs),
        output_modalities=_modalities(path, where, raw.get("output_modalities"), outputs),
        pricing=_pricing(path, where, raw.get("price")),
        route_id=model_id,
        fallbacks=tuple(raw.get("fallbacks", ())),
        description=str(raw.get("description", "")),
        owned_by=str(raw.get("owned_by", "arouter")),
        created=int(raw.get("created", DEFAULT_CREATED)),
        options=dict(raw.get("options", {})),
    )


def _alias_entry(path: Path, model_id: str, raw: dict, base: ModelEntry) -> ModelEntry:
    where = f'[models."{model_id}"]'
    extra = set(raw) - {"alias_of", "price", "description", "owned_by", "created"}
    if extra:
        raise _fail(
            path, where, f"an alias may only set price and description, not {sorted(extra)}"
        )
    pricing = _pricing(path, where, raw["price"]) if "price" in raw else base.pricing
    return ModelEntry(
        id=model_id,
        kind=base.kind,
        provider=base.provider,
        target=base.target,
        upstream=base.upstream,
        input_modalities=base.input_modalities,
        output_modalities=base.output_modalities,
        pricing=pricing,
        route_id=base.id,
        alias_of=base.id,
        fallbacks=base.fallbacks,
        description=str(raw.get("description", base.description)),
        owned_by=str(raw.get("owned_by", base.owned_by)),
        created=int(raw.get("created", base.created)),
        options=base.options,
    )


def _upstreams(path: Path, raw: Any) -> dict[str, Upstream]:
    if not isinstance(raw, dict):
        raise _fail(path, "[upstreams]", "must be a table of tables")
    upstreams = {}
    for name, table in raw.items():
        where = f"[upstreams.{name}]"
        if name == LOCAL:
            raise _fail(path, where, f"{LOCAL!r} names the local engines; call it otherwise")
        if not isinstance(table, dict) or not str(table.get("base_url", "")).startswith("http"):
            raise _fail(path, where, "`base_url` must be an http(s) URL")
        known = {"base_url", "api_key_env", "api_key_file"}
        upstreams[name] = Upstream(
            name=name,
            base_url=table["base_url"].rstrip("/"),
            api_key_env=str(table.get("api_key_env", "")),
            api_key_file=str(table.get("api_key_file", "")),
            options={k: v for k, v in table.items() if k not in known},
        )
    return upstreams


def load_catalog(path: Path) -> Catalog:
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise CatalogError(f"Model catalog {path} does not exist (set AROUTER_CATALOG)") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"Model catalog {path} is not valid TOML: {exc}") from None

    raw_models = document.get("models")
    if not isinstance(raw_models, dict) or not raw_models:
        raise _fail(path, "[models]", "the catalog must define at least one model")
    upstreams = _upstreams(path, document.get("upstreams", {}))

    models: dict[str, ModelEntry] = {}
    for model_id, raw in raw_models.items():
        if not isinstance(raw, dict):
            raise _fail(path, f'[models."{model_id}"]', "must be a table")
        if "alias_of" not in raw:
            models[model_id] = _base_entry(path, model_id, raw, upstreams)
    for model_id, raw in raw_models.items():
        if "alias_of" in raw:
            base = models.get(raw["alias_of"])
            if base is None:
                raise _fail(
                    path,
                    f'[models."{model_id}"]',
                    f"`alias_of` names {raw['alias_of']!r}, which is not a non-alias model",
                )
            models[model_id] = _alias_entry(path, model_id, raw, base)
    for entry in models.values():
        for fallback in entry.fallbacks:
            if fallback not in models or models[fallback].kind != entry.kind:
                raise _fail(
                    path,
                    f'[models."{entry.id}"]',
                    f"fallback {fallback!r} is not a {entry.kind} model",
                )
    return Catalog(models=dict(sorted(models.items())), upstreams=upstreams)


@functools.cache
def catalog() -> Catalog:
    return load_catalog(Path(settings.AROUTER_CATALOG))


def reload_catalog() -> Catalog:
    catalog.cache_clear()
    return catalog()
