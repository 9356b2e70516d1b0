"""GET /v1/models and /v1/models/{id}: the catalog, in OpenAI's list shape.

OpenAI's model object is `{id, object, created, owned_by, shutdown_date}` (the date the
model shuts down, null if none is announced). The other fields are ours, documented in the
README: what the model does (`kind`, modalities, `description`), who answers it
(`served_by`: "local" or an upstream's name; `alias_of`: the catalog id whose engine an
alias borrows), its `pricing`, and the rest of its lifecycle (`deprecated`: the date it
was deprecated; `successor`: the model that answers once it is retired; `retired`). How a
model is served inside (provider, weights, paths, addresses) is not shown.

A retired model with a successor is listed (requests naming it are served by the
successor); one without is not, and retrieving it is the 404 a request for it gets.
"""

import datetime
from typing import Literal

from django.http import HttpRequest
from ninja import Router, Schema

from gateway.catalog import ModelEntry, catalog

router = Router(tags=["models"])


class ModelOut(Schema):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    shutdown_date: datetime.date | None
    kind: str
    description: str
    input_modalities: list[str]
    output_modalities: list[str]
    served_by: str
    alias_of: str | None
    pricing: dict[str, str]
    deprecated: datetime.date | None
    successor: str | None
    retired: bool


class ModelList(Schema):
    object: Literal["list"] = "list"
    data: list[ModelOut]


def model_out(entry: ModelEntry) -> ModelOut:
    lifecycle = entry.lifecycle
    return ModelOut(
        id=entry.id,
        created=entry.created,
        owned_by=entry.owned_by,
        shutdown_date=lifecycle.shutdown_date,
        kind=entry.kind,
        description=entry.description,
        input_modalities=list(entry.input_modalities),
        output_modalities=list(entry.output_modalities),
        served_by=entry.served_by,
        alias_of=entry.alias_of,
        pricing=entry.pricing.as_dict(),
        deprecated=lifecycle.deprecated,
        successor=lifecycle.successor,
        retired=lifecycle.is_retired(),
    )


@router.get("", response=ModelList, summary="List models")
async def list_models(
    request: HttpRequest,
    output_modalities: Literal["text", "audio"] | None = None,
    input_modalities: Literal["text", "audio"] | None = None,
    kind: Literal["transcription", "speech", "chat"] | None = None,
) -> ModelList:
    """All models; `kind` selects one kind.

    The modality filters describe chat models (as the spec's "discover models supporting
    audio output" means): `output_modalities=audio` lists the chat models that can speak.
    """
    if output_modalities or input_modalities:
        kind = "chat"
    models = catalog()
    entries = models.filter(
        kind=kind, input_modality=input_modalities, output_modality=output_modalities
    )
    return ModelList(data=[model_out(entry) for entry in entries if models.is_listed(entry)])


@router.get("/{path:model_id}", response=ModelOut, summary="Retrieve a model")
async def retrieve_model(request: HttpRequest, model_id: str) -> ModelOut:
    models = catalog()
    entry = models.get(model_id)
    models.serving(entry)  # a retired model without a successor: its 404
    return model_out(entry)
