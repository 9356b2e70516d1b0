"""Websocket authentication: an API key in the header or subprotocol, or a session user.

The consumer decides what to do with the outcome: `scope["api_key"]` is the usable key,
or None with `scope["auth_error"]` holding the OpenAI error to send before closing.
Browsers cannot set headers on websockets, so OpenAI's convention of a subprotocol
`openai-insecure-api-key.<key>` is accepted too; the playground instead relies on the
logged-in session and names which of the team's keys to bill.
"""

from channels.auth import AuthMiddlewareStack
from channels.middleware import BaseMiddleware

from accounts.auth import MISSING_KEY, authenticate_key, bearer_token
from gateway.errors import OpenAIError, invalid_api_key

KEY_SUBPROTOCOL = "openai-insecure-api-key."


def key_from_scope(scope) -> str | None:
    headers = {
        name.decode("latin1").lower(): value.decode("latin1") for name, value in scope["headers"]
    }
    if token := bearer_token(headers.get("authorization")):
        return token
    for protocol in scope.get("subprotocols", []):
        if protocol.startswith(KEY_SUBPROTOCOL):
            return protocol[len(KEY_SUBPROTOCOL) :]
    return None


class ApiKeyScopeMiddleware(BaseMiddleware):
    async def __call__(self, scope, receive, send):
        scope = dict(scope, api_key=None, auth_error=None)
        raw = key_from_scope(scope)
        if raw is not None:
            try:
                scope["api_key"] = await authenticate_key(raw)
            except OpenAIError as exc:
                scope["auth_error"] = exc
        elif not getattr(scope.get("user"), "is_authenticated", False):
            scope["auth_error"] = invalid_api_key(MISSING_KEY)
        return await super().__call__(scope, receive, send)


def WebsocketAuthMiddleware(inner):
    return AuthMiddlewareStack(ApiKeyScopeMiddleware(inner))
