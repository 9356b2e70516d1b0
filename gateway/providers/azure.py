"""Azure OpenAI: OpenAI's models and bodies behind Azure's routes, key header and errors.

Azure serves OpenAI's own request and response bodies, so this is `UpstreamProvider`
(transcriptions, translations, speech, chat, and relayed audio chat) with three
differences:

- routes: `{base_url}/openai/deployments/{deployment}/audio/transcriptions?api-version=V`
  (likewise /audio/translations, /audio/speech, /chat/completions); the catalog entry's
  `target` is the deployment's name. `api_version = "v1"` uses Azure's newer v1 API
  instead, `{base_url}/openai/v1/...` with the deployment as the body's `model` and no
  api-version; `"preview"` (or `"latest"`) is the v1 API with that `?api-version=`, for
  its preview features.
- auth: `api-key: <key>` rather than `Authorization: Bearer <key>`.
- errors: OpenAI's envelope with Azure's codes, which are mapped: numeric codes ("401",
  "429") say nothing more than the status; `DeploymentNotFound` is OpenAI's
  `model_not_found`, `OperationNotSupported` (a deployment asked for what its model cannot
  do) `model_not_supported`; a prompt stopped by Azure's content filters is a 400
  `content_filter` naming the filtered categories. Chat answers carry Azure's filter
  annotations (`prompt_filter_results`, `content_filter_results`, and in streams a first
  chunk with no choices and, with the asynchronous filter, chunks with offsets but no
  delta): they are dropped, so clients get OpenAI's shape. A completion
  cut by the filters keeps OpenAI's own `finish_reason: "content_filter"`.

The api-version is the `[upstreams.NAME]` table's `api_version` (a model's own
`options.api_version` wins), by default 2024-10-21, the latest GA dated version. Audio
chat (gpt-4o-audio-preview deployments) and gpt-4o-transcribe / gpt-4o-mini-tts need a
newer preview version (such as 2025-04-01-preview) or the v1 API.

Example catalog:

    [upstreams.azure]
    base_url = "https://my-resource.openai.azure.com"
    api_key_env = "AZURE_OPENAI_API_KEY"
    api_version = "2025-04-01-preview"

    [models."azure/whisper"]
    kind = "transcription"
    provider = "azure"
    upstream = "azure"
    target = "whisper"                     # the deployment's name
    price = { per_audio_minute = 0.006 }

    [models."azure/gpt-4o-mini-tts"]
    kind = "speech"
    provider = "azure"
    upstream = "azure"
    target = "gpt-4o-mini-tts"
    price = { per_million_characters = 15 }

    [models."azure/gpt-4o-audio-preview"]
    kind = "chat"
    provider = "azure"
    upstream = "azure"
    target = "gpt-4o-audio-preview"
    input_modalities = ["text", "audio"]
    output_modalities = ["text", "audio"]
    price = { per_million_text_input_tokens = 2.5, per_million_text_output_tokens = 10,
              per_million_audio_input_tokens = 40, per_million_audio_output_tokens = 80 }
"""

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from gateway.catalog import ModelEntry
from gateway.providers.upstream import UpstreamProvider
from gateway.providers.upstream_client import Dialect

DEFAULT_API_VERSION = "2024-10-21"  # the latest GA dated data-plane version
V1_API_VERSIONS = ("v1", "preview", "latest")  # the v1 API: /openai/v1/..., model in the body
# Azure's error codes that have an OpenAI name; numeric ones ("401") only repeat the status.
AZURE_CODES = {
    "DeploymentNotFound": "model_not_found",
    "OperationNotSupported": "model_not_supported",
    "ResponsibleAIPolicyViolation": "content_filter",
}
CONTENT_FILTER = "content_filter"
# Azure's content-filter annotations on chat answers, absent from OpenAI's shape.
ANSWER_ANNOTATIONS = ("prompt_filter_results", "prompt_annotations")
CHOICE_ANNOTATIONS = ("content_filter_results", "content_filter_offsets")


def _api_key_header(key: str) -> dict[str, str]:
    return {"api-key": key}


def _filtered_categories(error: dict[str, Any]) -> list[str]:
    """The categories Azure's content filter stopped a prompt for ("hate (high)", ...)."""
    inner = error.get("innererror")
    results = inner.get("content_filter_result") if isinstance(inner, dict) else None
    if not isinstance(results, dict):
        return []
    named = []
    for category, verdict in results.items():
        if isinstance(verdict, dict) and verdict.get("filtered"):
            severity = verdict.get("severity")
            named.append(f"{category} ({severity})" if severity else category)
    return named


def azure_error_fields(body: Any) -> tuple[str, str | None, str | None]:
    """(message, param, code) of an Azure error body, with Azure's codes in OpenAI's terms.

    Azure answers `{"error": {"code", "message", "param"?, "innererror"?}}`; its gateway
    in front (API Management) sometimes answers `{"statusCode", "message"}` instead.
    """
    if not isinstance(body, dict):
        return "", None, None
    error = body.get("error")
    if not isinstance(error, dict):
        return str(error or body.get("message") or ""), None, None
    message = str(error.get("message") or "")
    raw_code = error.get("code")
    code = None if raw_code is None or str(raw_code).isdigit() else str(raw_code)
    inner = error.get("innererror")
    inner_code = str(inner.get("code")) if isinstance(inner, dict) else ""
    code = AZURE_CODES.get(code, code) if code else AZURE_CODES.get(inner_code)
    param = error.get("param") if isinstance(error.get("param"), str) else None
    if code == CONTENT_FILTER:
        param = None  # Azure says "prompt", which is no parameter of OpenAI's API
        if categories := _filtered_categories(error):
            message = f"{message} (filtered: {', '.join(categories)})"
    return message, param, code


AZURE = Dialect(auth_headers=_api_key_header, error_fields=azure_error_fields)


def as_openai_answer(body: dict[str, Any]) -> dict[str, Any]:
    """A chat completion or chunk from Azure without Azure's content-filter annotations."""
    for name in ANSWER_ANNOTATIONS:
        body.pop(name, None)
    for choice in body.get("choices") or []:
        if isinstance(choice, dict):
            for name in CHOICE_ANNOTATIONS:
                choice.pop(name, None)
    return body


class AzureOpenAIProvider(UpstreamProvider):
    """Transcriber, Synthesizer, ChatModel and ChatRelay on one Azure OpenAI deployment."""

    dialect = AZURE

    def __init__(self, entry: ModelEntry) -> None:
        super().__init__(entry)
        upstream_version = self.client.upstream.options.get("api_version", DEFAULT_API_VERSION)
        self.api_version = str(entry.options.get("api_version", upstream_version))

    def endpoint(self, path: str) -> str:
        if self.api_version in V1_API_VERSIONS:
            route = f"/openai/v1{path}"
            return route if self.api_version == "v1" else f"{route}?api-version={self.api_version}"
        deployment = quote(self.model, safe="")
        return f"/openai/deployments/{deployment}{path}?api-version={quote(self.api_version)}"

    async def relay_chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return as_openai_answer(await super().relay_chat(body))

    async def relay_chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async with contextlib.aclosing(super().relay_chat_stream(body)) as chunks:
            async for chunk in chunks:
                if not _annotations_only(chunk):
                    yield as_openai_answer(chunk)


def _annotations_only(chunk: dict[str, Any]) -> bool:
    """Azure's chunks that carry only filter results: the prompt's, before the first delta
    (no choices), and with the asynchronous filter, a choice's offsets (no delta)."""
    choices = chunk.get("choices") or []
    return not chunk.get("usage") and all(
        isinstance(choice, dict) and "delta" not in choice for choice in choices
    )
