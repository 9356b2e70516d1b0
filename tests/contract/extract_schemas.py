"""Re-extract the vendored OpenAI schemas from a checkout of openai/openai-openapi.

    python tests/contract/extract_schemas.py /path/to/openai-openapi/openapi.json COMMIT

Writes `openai-schemas.json` beside this file: the component schemas in ROOTS and every
schema they reference, unchanged, under the document's own names, with a note of where
they came from. Only the standard library is used, so it runs outside the virtualenv.
"""

import json
import sys
from pathlib import Path
from typing import Any

SOURCE_REPO = "https://github.com/openai/openai-openapi"
SOURCE_PATH = "openapi.json"
# The responses ARouter sends that OpenAI's document describes.
ROOTS = (
    "CreateTranscriptionResponseJson",
    "CreateTranscriptionResponseVerboseJson",
    "CreateTranscriptionResponseDiarizedJson",
    "CreateTranscriptionResponseStreamEvent",
    "TranscriptTextDeltaEvent",
    "TranscriptTextDoneEvent",
    "CreateTranslationResponseJson",
    "CreateTranslationResponseVerboseJson",
    "CreateSpeechResponseStreamEvent",
    "SpeechAudioDeltaEvent",
    "SpeechAudioDoneEvent",
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "Model",
    "ListModelsResponse",
    "ErrorResponse",
    "RealtimeCreateClientSecretRequest",
    "RealtimeCreateClientSecretResponse",
    "RealtimeServerEvent",
)
PREFIX = "#/components/schemas/"


def referenced(node: Any) -> set[str]:
    """Names of the component schemas `node` refers to directly."""
    if isinstance(node, dict):
        found = {node["$ref"].removeprefix(PREFIX)} if "$ref" in node else set()
        for value in node.values():
            found |= referenced(value)
        return found
    if isinstance(node, list):
        return set().union(*(referenced(value) for value in node)) if node else set()
    return set()


def closure(schemas: dict[str, Any], roots: tuple[str, ...]) -> dict[str, Any]:
    wanted, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(referenced(schemas[name]))
    return {name: schemas[name] for name in sorted(wanted)}


def main(document_path: str, commit: str) -> None:
    document = json.loads(Path(document_path).read_text())
    out = {
        "x-source": {
            "repository": SOURCE_REPO,
            "path": SOURCE_PATH,
            "commit": commit,
            "openapi": document["openapi"],
            "info.version": document["info"]["version"],
            "licence": "MIT, Copyright (c) OpenAI; see LICENSE in this folder",
        },
        "components": {"schemas": closure(document["components"]["schemas"], ROOTS)},
    }
    target = Path(__file__).with_name("openai-schemas.json")
    target.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(out['components']['schemas'])} schemas to {target}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
