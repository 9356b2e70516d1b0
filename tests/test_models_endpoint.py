"""GET /v1/models and /v1/models/{id}."""

import pytest

from gateway.catalog import catalog
from tests.openai_contract import assert_matches

# Our fields beside OpenAI's {id, object, created, owned_by, shutdown_date}, as the README
# lists them.
OUR_FIELDS = (
    "kind",
    "description",
    "input_modalities",
    "output_modalities",
    "served_by",
    "alias_of",
    "pricing",
    "deprecated",
    "successor",
    "retired",
)
OPENAI_NAMES = {
    "whisper-1": "local/whisper-base",
    "gpt-4o-transcribe": "local/whisper-base",
    "gpt-4o-mini-transcribe": "local/whisper-base",
    "tts-1": "local/piper",
    "tts-1-hd": "local/piper",
    "gpt-4o-mini-tts": "local/piper",
    "gpt-4o-audio-preview": "local/audio-chat",
    "gpt-realtime": "local/audio-chat",
}


def test_list_shape(api):
    body = api.get("/v1/models").json()
    assert_matches("ListModelsResponse", body, extras=[f"data.*.{f}" for f in OUR_FIELDS])
    ids = [model["id"] for model in body["data"]]
    assert ids == sorted(catalog().models)
    for model in body["data"]:
        assert list(model) == ["id", "object", "created", "owned_by", "shutdown_date", *OUR_FIELDS]
        assert model["owned_by"]
        assert model["input_modalities"]
        assert model["output_modalities"]
        assert model["served_by"] == "local"  # the default catalog serves all of it here
        assert isinstance(model["pricing"], dict)
        # No lifecycle in the default catalog: OpenAI's "null if not announced".
        assert (model["shutdown_date"], model["deprecated"], model["successor"]) == (None,) * 3
        assert model["retired"] is False


def test_retrieve_is_openais_model_object(api):
    model = api.get("/v1/models/local/whisper-base").json()
    assert_matches("Model", model, extras=OUR_FIELDS)
    assert (model["served_by"], model["alias_of"]) == ("local", None)


def test_aliases_say_what_serves_them_without_internal_paths(api):
    model = api.get("/v1/models/openai/whisper-large-v3").json()
    assert (model["served_by"], model["alias_of"]) == ("local", "local/whisper-base")
    assert model["pricing"] == {"per_audio_minute": "0.006"}
    listing = api.get("/v1/models").content.decode()
    # Providers' targets (packaged weights, file paths) and provider names stay inside.
    for internal in ("packaged:", '"route"', '"provider"', '"target"', "en_US-joe"):
        assert internal not in listing


@pytest.mark.parametrize(("name", "engine"), sorted(OPENAI_NAMES.items()))
def test_openai_model_names_are_listed_as_aliases_of_local_engines(api, name, engine):
    model = api.get(f"/v1/models/{name}").json()
    assert (model["id"], model["served_by"], model["alias_of"]) == (name, "local", engine)
    assert model["kind"] == catalog().models[engine].kind
    assert engine in model["description"]  # says so in words too


def test_alias_can_carry_its_own_price(api):
    standard = api.get("/v1/models/openai/tts-1").json()
    hd = api.get("/v1/models/openai/tts-1-hd").json()
    assert standard["alias_of"] == hd["alias_of"] == "local/piper"
    assert standard["pricing"] == {"per_million_characters": "15"}
    assert hd["pricing"] == {"per_million_characters": "30"}


def test_output_modalities_audio_lists_exactly_audio_chat_models(api):
    body = api.get("/v1/models?output_modalities=audio").json()
    expected = sorted(
        entry.id
        for entry in catalog().models.values()
        if entry.kind == "chat" and "audio" in entry.output_modalities
    )
    assert [model["id"] for model in body["data"]] == expected
    assert "openai/gpt-5.4-audio-preview" in expected
    assert "local/gemma-3-270m" not in expected


def test_input_modalities_filter(api):
    ids = {m["id"] for m in api.get("/v1/models?input_modalities=audio").json()["data"]}
    assert ids == {
        "local/audio-chat",
        "openai/gpt-5.4-audio-preview",
        "gpt-4o-audio-preview",
        "gpt-realtime",
    }


def test_kind_filter(api):
    ids = {m["id"] for m in api.get("/v1/models?kind=speech").json()["data"]}
    assert ids == {
        "local/piper",
        "openai/tts-1",
        "openai/tts-1-hd",
        "tts-1",
        "tts-1-hd",
        "gpt-4o-mini-tts",
    }


def test_bad_filter_is_a_400_naming_the_param(api):
    response = api.get("/v1/models?output_modalities=video")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "output_modalities"
    assert error["type"] == "invalid_request_error"


def test_retrieve_unknown_model_is_404_model_not_found(api):
    response = api.get("/v1/models/nobody/nothing")
    assert response.status_code == 404
    assert_matches("ErrorResponse", response.json())
    assert response.json() == {
        "error": {
            "message": "The model `nobody/nothing` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
