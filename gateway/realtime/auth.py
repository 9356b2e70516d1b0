"""Websocket authentication: an API key in the header or subprotocol, or a session user.

The middleware reads a key: `scope["api_key"]` is the usable key, or None with
`scope["auth_error"]` holding the OpenAI error to send before closing. Without a key, a
logged-in user of one of this site's pages may name which team key to bill
(`authenticate`, which the consumer calls on connect).
Browsers cannot set headers on websockets, so OpenAI's convention of a subprotocol
`openai-insecure-api-key.<key>` is accepted too; the playground instead relies on the
logged-in session and names which of the team's keys to bill.

A socket lives for many turns, so what it authenticated with is kept as a `Credential`
and checked again against the database at every turn (`current_key`): the key still
usable, the member still in its team, the login still live.
"""

from dataclasses import dataclass
from importlib import import_module
from urllib.parse import parse_qs, urlparse

from channels.auth import AuthMiddlewareStack
from channels.middleware import BaseMiddleware
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.http.request import split_domain_port, validate_host
from django.utils.crypto import constant_time_compare

from accounts import ephemeral
from accounts.auth import MISSING_KEY, authenticate_key, bearer_token, refuse_unusable
from accounts.models import ApiKey
from core.errors import OpenAIError, invalid_api_key
from core.hot_path_db import run_query

KEY_SUBPROTOCOL = "openai-insecure-api-key."
LOGGED_OUT = "Your session has ended. Log in again to keep talking."


@dataclass(frozen=True)
class Credential:
    """What a socket authenticated with, to check again at every turn."""

    key_id: int
    # A playground token or a session: this member must still be in the key's team.
    user_id: int | None = None
    # Session auth: this login must still be live (not logged out, password unchanged).
    session_key: str | None = None


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


def _session_is_live(session_key: str, user_id: int) -> bool:
    """Whether the session still logs in `user_id`, as Django's get_user would decide,
    without its side effects (it may flush or re-key the session it reads)."""
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    if session.get(SESSION_KEY) != str(user_id):
        return False
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    return user is not None and constant_time_compare(
        session.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()
    )


def _current_key(credential: Credential) -> ApiKey:
    if credential.session_key is not None and not _session_is_live(
        credential.session_key, credential.user_id
    ):
        raise invalid_api_key(LOGGED_OUT)
    if credential.user_id is None:
        api_key = ApiKey.objects.select_related("team").filter(pk=credential.key_id).first()
        if api_key is None:
            raise invalid_api_key("This API key no longer exists.")
    else:
        api_key = ephemeral.key_of_member(credential.key_id, credential.user_id)
        if api_key is None:
            raise invalid_api_key("This API key or your membership of its team no longer exists.")
    refuse_unusable(api_key)
    return api_key


async def current_key(credential: Credential) -> ApiKey:
    """The key as the database has it now (never the key cache), or OpenAI's 401."""
    return await run_query(_current_key, credential)


class ApiKeyScopeMiddleware(BaseMiddleware):
    async def __call__(self, scope, receive, send):
        scope = dict(scope, api_key=None, auth_error=None, credential=None, minted_session=None)
        raw = key_from_scope(scope)
        if raw is not None:
            try:
                api_key = await authenticate_key(raw)
                user_id = None
                if raw.startswith(ephemeral.PREFIX):
                    user_id = ephemeral.user_id_of(raw)
                    # A client secret's session: the socket starts with its settings.
                    scope["minted_session"] = ephemeral.session_of(raw)
                scope["api_key"], scope["credential"] = api_key, Credential(api_key.pk, user_id)
            except OpenAIError as exc:
                scope["auth_error"] = exc
        elif not getattr(scope.get("user"), "is_authenticated", False):
            scope["auth_error"] = invalid_api_key(MISSING_KEY)
        return await super().__call__(scope, receive, send)


def _host_and_port(netloc: str, default_port: int) -> tuple[str, int] | None:
    domain, port = split_domain_port(netloc)
    if not domain or (port and not port.isdigit()):
        return None
    return domain, int(port) if port else default_port


def same_site_origin(scope) -> bool:
    """Whether the handshake comes from a page of this very server: the Origin's host and
    port are the Host the browser connected to, and that host is one of ALLOWED_HOSTS.

    Browsers always send an Origin. Comparing the host alone would let any other service
    on the same machine (another port: another origin) use a visitor's session."""
    headers = dict(scope.get("headers", []))
    origin = urlparse(headers.get(b"origin", b"").decode("latin1"))
    host = headers.get(b"host", b"").decode("latin1").strip()
    default_port = {"http": 80, "https": 443}.get(origin.scheme)
    if default_port is None or not origin.netloc or not host:
        return False
    # A Host without a port is the default port of the scheme the page was served with.
    requested = _host_and_port(host, default_port)
    if requested is None or _host_and_port(origin.netloc, default_port) != requested:
        return False
    return validate_host(requested[0], settings.ALLOWED_HOSTS)


async def key_for_session_user(user, key_id: str | None) -> ApiKey:
    """The team key a logged-in playground user chose to bill, if it is theirs and usable."""
    if not key_id or not key_id.isdigit():
        raise invalid_api_key(
            "Choose which of your team's API keys to bill with the `key_id` query parameter."
        )
    api_key = (
        await ApiKey.objects.usable()
        .filter(pk=int(key_id), team__memberships__user=user)
        .select_related("team")
        .afirst()
    )
    if api_key is None:
        raise invalid_api_key(f"No usable API key {key_id} in your teams.")
    return api_key


async def authenticate(scope) -> tuple[ApiKey, Credential]:
    """The key a socket bills and what to check again at each turn, or OpenAI's error."""
    if scope.get("api_key") is not None:
        return scope["api_key"], scope["credential"]
    if scope.get("auth_error") is not None:
        raise scope["auth_error"]
    if not same_site_origin(scope):
        # Cookies ride along on cross-site websocket handshakes; only our own pages may
        # use the session.
        raise OpenAIError(
            "Session authentication is only accepted from this site's own pages.",
            status=403,
            code="invalid_origin",
        )
    query = parse_qs(scope.get("query_string", b"").decode())
    user = scope["user"]
    api_key = await key_for_session_user(user, (query.get("key_id") or [None])[0])
    return api_key, Credential(api_key.pk, user.pk, scope["session"].session_key)


def WebsocketAuthMiddleware(inner):
    return AuthMiddlewareStack(ApiKeyScopeMiddleware(inner))
