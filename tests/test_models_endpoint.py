"""GET /v1/models and /v1/models/{id}."""

from gateway.catalog import catalog


def test_list_shape(api):
    body = api.get("/v1/models").json()
    assert body["object"] == "list"
    ids = [model["id"] for model in body["data"]]
    assert ids == sorted(catalog().models)
    for model in body["data"]:
        assert model["object"] == "model"
        assert isinstance(model["created"], int)
        assert model["owned_by"]
        assert model["input_modalities"]
        assert model["output_modalities"]
        assert "provider" in model["route"]
        assert isinstance(model["pricing"], dict)


def test_aliases_show_their_route_honestly(api):
    model = api.get("/v1/models/openai/whisper-large-v3").json()
    assert model["route"] == {
        "provider": "whisper",
        "target": "packaged:whisper-base",
        "alias_of": "local/whisper-base",
    }
    assert model["pricing"] == {"per_audio_minute": "0.006"}


def test_alias_can_carry_its_own_price(api):
    standard = api.get("/v1/models/openai/tts-1").json()
    hd = api.get("/v1/models/openai/tts-1-hd").json()
    assert standard["route"]["alias_of"] == hd["route"]["alias_of"] == "local/piper"
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
    assert ids == {"local/audio-chat", "openai/gpt-5.4-audio-preview"}


def test_kind_filter(api):
    ids = {m["id"] for m in api.get("/v1/models?kind=speech").json()["data"]}
    assert ids == {"local/piper", "openai/tts-1", "openai/tts-1-hd"}


def test_bad_filter_is_a_400_naming_the_param(api):
    response = api.get("/v1/models?output_modalities=video")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "output_modalities"
    assert error["type"] == "invalid_request_error"


def test_retrieve_unknown_model_is_404_model_not_found(api):
    response = api.get("/v1/models/nobody/nothing")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "The model `nobody/nothing` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
