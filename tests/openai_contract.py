"""Checking our responses against OpenAI's own schemas (vendored in tests/contract/).

`assert_matches("CreateChatCompletionResponse", body, extras=["usage.cost"])` passes when
`body` is valid under OpenAI's component schema of that name, and the only fields it has
that the schema does not declare are the ones `extras` lists (dotted paths, `*` for every
item of a list). So a test fails both when we break the contract and when we grow an
undocumented field.

Two readings of one document:
- as published, where an object without `additionalProperties` allows any other field
  (none of the schemas we check says `additionalProperties: false`, so our `cost` inside
  `usage` is allowed everywhere);
- strict, where every object that lists `properties` allows nothing else, which is how
  undeclared fields are found.

The document is OpenAPI 3.1 (JSON Schema 2020-12) but still writes `nullable: true` in
places, an OpenAPI 3.0 keyword JSON Schema ignores; it is read as "or null", its intent.
"""

import copy
import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jsonschema_rs import Draft202012Validator, ValidationError

DOCUMENT = Path(__file__).parent / "contract" / "openai-schemas.json"


def _nullable(node: Any) -> Any:
    """`nullable: true` (OpenAPI 3.0) as JSON Schema: the schema, or null."""
    if isinstance(node, list):
        return [_nullable(value) for value in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable(value) for key, value in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


def _closed(node: Any) -> Any:
    """Every object schema that lists its properties, closed to any others."""
    if isinstance(node, list):
        return [_closed(value) for value in node]
    if not isinstance(node, dict):
        return node
    node = {key: _closed(value) for key, value in node.items()}
    if "properties" in node and "additionalProperties" not in node:
        node["unevaluatedProperties"] = False
    return node


@functools.cache
def _document(strict: bool) -> dict[str, Any]:
    document = json.loads(DOCUMENT.read_text())
    schemas = _nullable(document["components"]["schemas"])
    if strict:
        schemas = {name: _closed(schema) for name, schema in schemas.items()}
    return {"components": {"schemas": schemas}}


@functools.cache
def _validator(name: str, strict: bool) -> Draft202012Validator:
    document = _document(strict)
    if name not in document["components"]["schemas"]:
        raise KeyError(f"{name} is not among the vendored schemas (tests/contract/)")
    return Draft202012Validator({**document, "$ref": f"#/components/schemas/{name}"})


def _without(instance: Any, path: list[str]) -> None:
    """Remove the field at `path` (in place) from `instance`, wherever it occurs."""
    head, *rest = path
    if head == "*":
        for item in instance if isinstance(instance, list) else ():
            _without(item, rest)
    elif isinstance(instance, dict) and head in instance:
        if rest:
            _without(instance[head], rest)
        else:
            del instance[head]


def problems(name: str, instance: Any, *, strict: bool = False) -> list[str]:
    """Every way `instance` breaks schema `name`, each as `path: message`."""
    return [_describe(error) for error in _validator(name, strict).iter_errors(instance)]


def _describe(error: ValidationError) -> str:
    path = "/" + "/".join(str(part) for part in error.instance_path)
    # anyOf/oneOf say only "not valid under any"; the branch that came closest says why.
    branches = getattr(error.kind, "context", None) or []
    if not branches:
        return f"{path}: {error.message}"
    closest = min(branches, key=len)
    return f"{path}: {error.message}; closest: " + "; ".join(_describe(e) for e in closest)


def assert_matches(name: str, instance: Any, extras: Iterable[str] = ()) -> None:
    """`instance` is a valid OpenAI `name`, and has no undeclared fields but `extras`."""
    found = problems(name, instance)
    assert not found, f"not a valid {name}:\n" + "\n".join(found)
    declared_only = copy.deepcopy(instance)
    for extra in extras:
        _without(declared_only, extra.split("."))
    undeclared = problems(name, declared_only, strict=True)
    assert not undeclared, f"fields {name} does not declare:\n" + "\n".join(undeclared)


def assert_stream_matches(name: str, events: Iterable[Any], extras: Iterable[str] = ()) -> None:
    """Every event of a stream is a valid `name` (a union of event schemas, or one)."""
    extras = list(extras)
    for event in events:
        assert_matches(name, event, extras)
