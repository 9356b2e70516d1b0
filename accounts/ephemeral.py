"""Short-lived playground tokens: what a browser page holds instead of an API key.

Keys are stored only as digests, so a page cannot hold one; like OpenAI's ephemeral client
secrets, the playground asks for a signed token naming the team key to bill and the user
who asked. It is checked on every use: still signed by us, younger than its lifetime, the
key still usable, and the user still a member of the key's team.

Client secrets (POST /v1/realtime/client_secrets) are the same kind of token minted by a
key itself: they name the key, their own expiry and the realtime session to start with,
and no user; the key must still be usable whenever one is used.
"""

import time

from django.core import signing

from accounts.models import ApiKey
from core.errors import invalid_api_key
from core.hot_path_db import run_query

PREFIX = "ek_"
LIFETIME_SECONDS = 15 * 60
# "~" separates the parts: ":" (Django's default) is not allowed in a websocket subprotocol.
_signer = signing.TimestampSigner(salt="arouter.playground-token", sep="~")
GONE = "This playground token's key or team membership no longer exists."


def mint(api_key: ApiKey, user_id: int) -> str:
    return PREFIX + _signer.sign_object({"k": api_key.pk, "u": user_id})


def mint_client_secret(api_key: ApiKey, expires_at: int, session: dict) -> str:
    """A client secret billing `api_key` until `expires_at` (unix seconds), carrying the
    session update a socket opened with it starts from."""
    claims = {"k": api_key.pk, "x": expires_at, "s": session}
    return PREFIX + _signer.sign_object(claims, compress=True)


def _claims(token: str) -> dict:
    raw = token[len(PREFIX) :]
    try:
        claims = _signer.unsign_object(raw)
        if "x" not in claims:  # a playground token: its lifetime counts from signing
            claims = _signer.unsign_object(raw, max_age=LIFETIME_SECONDS)
    except signing.SignatureExpired:
        raise invalid_api_key("This playground session has expired. Reload the page.") from None
    except signing.BadSignature:
        raise invalid_api_key("Incorrect client secret or playground token provided.") from None
    if "x" in claims and time.time() >= claims["x"]:
        raise invalid_api_key("This client secret has expired.")
    return claims


def user_id_of(token: str) -> int | None:
    """The member a valid token was minted for, None for a client secret (OpenAI's 401
    for an invalid one)."""
    return _claims(token).get("u")


def session_of(token: str) -> dict | None:
    """The session update a client secret was minted with (None for a playground token)."""
    return _claims(token).get("s")


def _key_by_id(key_id: int) -> ApiKey | None:
    return ApiKey.objects.select_related("team").filter(pk=key_id).first()


def key_of_member(key_id: int, user_id: int) -> ApiKey | None:
    """The key, read from the database, if the user is (still) a member of its team.

    Synchronous, for `run_query`; the realtime socket calls it again at every turn."""
    return (
        ApiKey.objects.select_related("team")
        .filter(pk=key_id, team__memberships__user_id=user_id)
        .first()
    )


async def key_for(token: str) -> ApiKey:
    """The key a playground token bills, or OpenAI's 401 with the reason."""
    claims = _claims(token)
    if "u" in claims:
        api_key = await run_query(key_of_member, claims["k"], claims["u"])
    else:
        api_key = await run_query(_key_by_id, claims["k"])
    if api_key is None:
        raise invalid_api_key(GONE)
    return api_key
