"""The model catalog: one declarative TOML file naming every model the gateway serves.

Each entry says what the model does (its kind and modalities), who serves it (a provider
from `gateway.providers.PROVIDERS` and that provider's target), and what it costs. Aliases
are explicit entries that borrow another entry's route, so `/v1/models` shows honestly
what really serves an `openai/...` id or one of OpenAI's own names (`whisper-1`, `tts-1`).

An entry may also carry its lifecycle (`deprecated`, `shutdown_date`, `successor`,
`retired`): a model retired (or past its shutdown date) is answered by its successor,
the response saying so in a `Warning` header; without a successor it is OpenAI's 404.
"""

import datetime
import functools
import logging
import os
import tomllib
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from core.errors import OpenAIError, invalid_param, model_not_found

logger = logging.getLogger(__name__)

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
LIFECYCLE_FIELDS = ("deprecated", "shutdown_date", "successor", "retired")


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
class Lifecycle:
    """When a model was deprecated and shuts down, what replaces it, whether it is retired.

    A model is retired once marked `retired = true` or from its `shutdown_date` on (the
    day OpenAI stops serving a model is its shutdown date).
    """

    deprecated: datetime.date | None = None
    shutdown_date: datetime.date | None = None
    successor: str | None = None
    retired: bool = False

    def is_retired(self, today: datetime.date | None = None) -> bool:
        today = today or _utc_today()
        return self.retired or (self.shutdown_date is not None and today >= self.shutdown_date)

    def retired_on(self, today: datetime.date | None = None) -> str:
        """The retirement's date in words (" on 2026-01-15"), or "" when it has none yet
        (marked retired before its shutdown date, or without one)."""
        today = today or _utc_today()
        if self.shutdown_date is None or self.shutdown_date > today:
            return ""
        return f" on {self.shutdown_date.isoformat()}"


@dataclass(frozen=True)
class Substitution:
    """A request named a retired model; its successor serves it instead."""

    requested: str
    served: str
    retired_on: str  # " on DATE" or ""

    @property
    def notice(self) -> str:
        return (
            f"The model `{self.requested}` was retired{self.retired_on}; "
            f"its successor `{self.served}` served this request."
        )

    @property
    def warning_header(self) -> str:
        """A Warning header's value (RFC 7234): 299, a persistent warning; no agent."""
        text = self.notice.replace("\\", "\\\\").replace('"', '\\"')
        return f'299 - "{text}"'


def _utc_today() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()


def model_retired(entry: "ModelEntry") -> OpenAIError:
    """OpenAI's answer for a model it no longer serves: 404 model_not_found, saying why."""
    return OpenAIError(
        f"The model `{entry.id}` was retired{entry.lifecycle.retired_on()} and no model "
        "succeeds it: it is no longer served. GET /v1/models lists the models served.",
        status=404,
        param="model",
        code="model_not_found",
    )


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
    lifecycle: Lifecycle = Lifecycle()
    # Set by `Catalog.resolve` on the successor's entry when a request named a retired
    # model: the ledger then records the model that served, the response carries the notice.
    substitution: Substitution | None = None

    @property
    def notice_headers(self) -> dict[str, str]:
        """Headers every response to a request for this entry carries (the substitution)."""
        if self.substitution is None:
            return {}
        return {"Warning": self.substitution.warning_header}

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
        """The entry for a request of `kind`, or the OpenAI error a client should see.

        A retired model's request goes to its successor (followed down the chain): the
        successor's entry is returned carrying the `substitution`.
        """
        entry = self.get(model_id)
        if entry.kind != kind:
            raise invalid_param(
                f"The model `{model_id}` is a {entry.kind} model and does not support "
                f"{KIND_VERBS[kind]}.",
                param="model",
                code="model_not_supported",
            )
        return self.in_service(entry)

    def in_service(self, entry: ModelEntry) -> ModelEntry:
        """`entry`, or the successor serving in its place; OpenAI's 404 when none does."""
        served = self.serving(entry)
        if served is entry:
            return entry
        substitution = Substitution(entry.id, served.id, entry.lifecycle.retired_on())
        logger.warning("%s", substitution.notice)  # the operator sees who still asks for it
        return replace(served, substitution=substitution)

    def serving(self, entry: ModelEntry) -> ModelEntry:
        """The entry that answers requests naming `entry` (itself, or the successor in
        service), or OpenAI's 404 when the model is retired without one."""
        today = _utc_today()
        served = entry
        while served.lifecycle.is_retired(today):
            if served.lifecycle.successor is None:
                raise model_retired(entry)
            served = self.models[served.lifecycle.successor]  # checked at load: no cycle
        return served

    def is_listed(self, entry: ModelEntry) -> bool:
        """Whether /v1/models shows `entry`: each model a request may name and be served
        (a retired one with a successor is; one without is OpenAI's 404, so is not)."""
        try:
            self.serving(entry)
        except OpenAIError:
            return False
        return True

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


def _date(path: Path, where: str, name: str, value: Any) -> datetime.date | None:
    """A TOML date (`2026-01-15`) or an ISO date string."""
    if value is None or (
        isinstance(value, datetime.date) and not isinstance(value, datetime.datetime)
    ):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            pass
    raise _fail(path, where, f"`{name}` must be a date (2026-01-15), not {value!r}")


def _lifecycle(path: Path, where: str, raw: dict, inherited: Lifecycle) -> Lifecycle:
    """The entry's lifecycle fields; an alias keeps its base's for the fields it omits."""
    successor = raw.get("successor", inherited.successor)
    if successor is not None and (not isinstance(successor, str) or not successor):
        raise _fail(path, where, "`successor` must name a model")
    retired = raw.get("retired", inherited.retired)
    if not isinstance(retired, bool):
        raise _fail(path, where, "`retired` must be true or false")
    return Lifecycle(
        deprecated=_date(path, where, "deprecated", raw.get("deprecated", inherited.deprecated)),
        shutdown_date=_date(
            path, where, "shutdown_date", raw.get("shutdown_date", inherited.shutdown_date)
        ),
        successor=successor,
        retired=retired,
    )


def _check_successors(path: Path, models: dict[str, ModelEntry]) -> None:
    """Each successor is a model of the same kind, and no chain of them comes back round."""
    for entry in models.values():
        where = f'[models."{entry.id}"]'
        seen = [entry.id]
        current = entry
        while (successor := current.lifecycle.successor) is not None:
            if successor not in models or models[successor].kind != entry.kind:
                raise _fail(path, where, f"successor {successor!r} is not a {entry.kind} model")
            if successor in seen:
                chain = " -> ".join([*seen, successor])
                raise _fail(path, where, f"successors go round in a circle ({chain})")
            seen.append(successor)
            current = models[successor]


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
        lifecycle=_lifecycle(path, where, raw, Lifecycle()),
    )


def _alias_entry(path: Path, model_id: str, raw: dict, base: ModelEntry) -> ModelEntry:
    where = f'[models."{model_id}"]'
    extra = set(raw) - {
        "alias_of",
        "price",
        "description",
        "owned_by",
        "created",
        *LIFECYCLE_FIELDS,
    }
    if extra:
        raise _fail(
            path,
            where,
            f"an alias may only set price, description and its lifecycle, not {sorted(extra)}",
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
        lifecycle=_lifecycle(path, where, raw, base.lifecycle),
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
    _check_successors(path, models)
    return Catalog(models=dict(sorted(models.items())), upstreams=upstreams)


@functools.cache
def catalog() -> Catalog:
    return load_catalog(Path(settings.AROUTER_CATALOG))


def reload_catalog() -> Catalog:
    catalog.cache_clear()
    return catalog()
