"""Short-lived playground tokens: what a browser page holds instead of an API key.

Keys are stored only as digests, so a page cannot hold one; like OpenAI's ephemeral client
secrets, the playground asks for a signed token naming the team key to bill and the user
who asked. It is checked on every use: still signed by us, younger than its lifetime, the
key still usable, and the user still a member of the key's team.
"""

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


def _claims(token: str) -> dict:
    try:
        return _signer.unsign_object(token[len(PREFIX) :], max_age=LIFETIME_SECONDS)
    except signing.SignatureExpired:
        raise invalid_api_key("This playground session has expired. Reload the page.") from None
    except signing.BadSignature:
        raise invalid_api_key("Incorrect playground token provided.") from None


def user_id_of(token: str) -> int:
    """The member a valid token was minted for (OpenAI's 401 for an invalid one)."""
    return _claims(token)["u"]


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
    api_key = await run_query(key_of_member, claims["k"], claims["u"])
    if api_key is None:
        raise invalid_api_key(GONE)
    return api_key
