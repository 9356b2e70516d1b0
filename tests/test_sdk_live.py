"""The official OpenAI Python SDK against ARouter on a real loopback socket."""

import openai
import pytest


def test_models_list_through_sdk(openai_client):
    models = openai_client.models.list()
    ids = {model.id for model in models.data}
    assert {"openai/whisper-large-v3", "openai/tts-1-hd", "local/piper"} <= ids
    assert all(model.object == "model" for model in models.data)


def test_model_retrieve_through_sdk(openai_client):
    model = openai_client.models.retrieve("openai/tts-1")
    assert model.id == "openai/tts-1"
    assert model.owned_by == "arouter"


def test_bad_key_raises_authentication_error(arouter_server, transactional_db):
    client = openai.OpenAI(
        base_url=f"{arouter_server.url}/v1", api_key="lr_live_wrong", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError) as caught:
        client.models.list()
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert caught.value.response.headers["x-request-id"].startswith("req_")


def test_unknown_model_raises_not_found(openai_client):
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.models.retrieve("nobody/nothing")
    assert caught.value.code == "model_not_found"
