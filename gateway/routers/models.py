"""GET /v1/models and /v1/models/{id}: the catalog, in OpenAI's list shape.

OpenAI's model object is `{id, object, created, owned_by}`. The other fields are ours,
documented in the README: what the model does (`kind`, modalities, `description`), who
answers it (`served_by`: "local" or an upstream's name; `alias_of`: the catalog id whose
engine an alias borrows) and its `pricing`. How a model is served inside (provider,
weights, paths, addresses) is not shown.
"""

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
    kind: str
    description: str
    input_modalities: list[str]
    output_modalities: list[str]
    served_by: str
    alias_of: str | None
    pricing: dict[str, str]


class ModelList(Schema):
    object: Literal["list"] = "list"
    data: list[ModelOut]


def model_out(entry: ModelEntry) -> ModelOut:
    return ModelOut(
        id=entry.id,
        created=entry.created,
        owned_by=entry.owned_by,
        kind=entry.kind,
        description=entry.description,
        input_modalities=list(entry.input_modalities),
        output_modalities=list(entry.output_modalities),
        served_by=entry.served_by,
        alias_of=entry.alias_of,
        pricing=entry.pricing.as_dict(),
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
    entries = catalog().filter(
        kind=kind, input_modality=input_modalities, output_modality=output_modalities
    )
    return ModelList(data=[model_out(entry) for entry in entries])


@router.get("/{path:model_id}", response=ModelOut, summary="Retrieve a model")
async def retrieve_model(request: HttpRequest, model_id: str) -> ModelOut:
    return model_out(catalog().get(model_id))
