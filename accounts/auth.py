"""API key authentication for /v1, shared by the HTTP API and the realtime websocket."""

from django.utils import timezone
from ninja.security.base import AuthBase

from accounts.models import ApiKey
from gateway.errors import invalid_api_key

MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def _incorrect(raw: str) -> str:
    shown = f"{raw[:8]}****{raw[-4:]}" if len(raw) > 12 else "****"
    return f"Incorrect API key provided: {shown}. You can find your API key in your dashboard."


async def authenticate_key(raw: str) -> ApiKey:
    """The usable key for a raw secret, or the OpenAI 401 a client should see."""
    lookup = ApiKey.lookup_of(raw)
    api_key = None
    if lookup is not None:
        api_key = await ApiKey.objects.select_related("team").filter(lookup=lookup).afirst()
    if api_key is None or not api_key.matches(raw):
        raise invalid_api_key(_incorrect(raw))
    now = timezone.now()
    if api_key.is_revoked:
        raise invalid_api_key("This API key has been revoked.")
    if api_key.is_expired(now):
        raise invalid_api_key("This API key has expired.")
    if api_key.last_used_is_stale(now):
        # A conditional update, so concurrent requests write at most once per window.
        await ApiKey.objects.filter(pk=api_key.pk, last_used_at=api_key.last_used_at).aupdate(
            last_used_at=now
        )
        api_key.last_used_at = now
    return api_key


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class ApiKeyAuth(AuthBase):
    """`Authorization: Bearer lr_live_…`; the request's `auth` becomes the ApiKey."""

    openapi_type = "http"
    openapi_scheme = "bearer"

    def __init__(self) -> None:
        super().__init__()
        self.is_async = True

    async def __call__(self, request) -> ApiKey:
        header = request.headers.get("Authorization")
        token = bearer_token(header)
        if token is None:
            raise invalid_api_key(MISSING_KEY if not header else _incorrect(header))
        return await authenticate_key(token)
