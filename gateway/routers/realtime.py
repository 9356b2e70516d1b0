"""POST /v1/realtime/client_secrets: a short-lived credential for the realtime socket.

As OpenAI's Realtime API: a server mints it with its team key and hands it to a browser,
which opens the socket with it (the `openai-insecure-api-key.<secret>` subprotocol or a
Bearer header). The secret bills and is limited by the key that minted it, dies with that
key, and the socket it opens starts with the session given here.
"""

import time
from typing import Literal

from django.http import HttpRequest
from ninja import Field, Router, Schema

from accounts import ephemeral
from core.errors import OpenAIError, invalid_param
from gateway.realtime.consumer import DEFAULT_MODEL
from gateway.realtime.protocol import RealtimeError
from gateway.realtime.session import Session
from gateway.realtime.turns import voice_chat_model

router = Router(tags=["realtime"])


class ExpiresAfter(Schema):
    anchor: Literal["created_at"] = "created_at"
    seconds: int = Field(600, ge=10, le=7200)


class ClientSecretRequest(Schema):
    expires_after: ExpiresAfter = Field(default_factory=ExpiresAfter)
    session: dict = Field(default_factory=lambda: {"type": "realtime"})


class ClientSecretResponse(Schema):
    value: str
    expires_at: int
    session: dict


def _opened_session(update: dict) -> Session:
    """The session a socket opened with the secret starts with, or OpenAI's 400."""
    model = update.get("model") or DEFAULT_MODEL
    if not isinstance(model, str):
        raise invalid_param("Invalid type for 'session.model': expected a string.", "session.model")
    try:
        entry, provider = voice_chat_model(model)
    except OpenAIError as exc:
        exc.param = "session.model"  # the model is named inside the session here
        raise
    try:
        return Session.opened(model).updated(update, (model, entry.id), provider.voices())
    except RealtimeError as exc:
        raise invalid_param(exc.message, param=exc.param, code=exc.code) from None


@router.post("/client_secrets", response=ClientSecretResponse, summary="Create client secret")
async def create_client_secret(
    request: HttpRequest, body: ClientSecretRequest
) -> ClientSecretResponse:
    session = _opened_session(body.session)
    expires_at = int(time.time()) + body.expires_after.seconds
    value = ephemeral.mint_client_secret(request.auth, expires_at, body.session)
    return ClientSecretResponse(value=value, expires_at=expires_at, session=session.fields)
