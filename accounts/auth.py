"""API key authentication for /v1, shared by the HTTP API and the realtime websocket."""

import time

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from ninja.security.base import AuthBase

from accounts import ephemeral
from accounts.models import ApiKey, key_digest
from core.errors import invalid_api_key
from core.hot_path_db import run_query

MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)

# Verified keys by digest, with when they were read. Trusted for AROUTER_KEY_CACHE_SECONDS,
# so most requests need no query; a save or delete in this process drops the entry at once.
_verified: dict[str, tuple[ApiKey, float]] = {}


def forget_cached_key(api_key: ApiKey) -> None:
    """Drop a key from this worker's cache (others let it expire, see the setting)."""
    _verified.pop(api_key.digest, None)


@receiver([post_save, post_delete], sender=ApiKey)
def _forget_changed_key(sender, instance: ApiKey, **kwargs) -> None:
    forget_cached_key(instance)


def _incorrect(raw: str) -> str:
    shown = f"{raw[:8]}****{raw[-4:]}" if len(raw) > 12 else "****"
    return f"Incorrect API key provided: {shown}. You can find your API key in your dashboard."


def _read_key(lookup: str) -> ApiKey | None:
    return ApiKey.objects.select_related("team").filter(lookup=lookup).first()


def _touch(api_key: ApiKey, now) -> None:
    # Conditional, so concurrent requests (and workers) write at most once per window.
    ApiKey.objects.filter(pk=api_key.pk, last_used_at=api_key.last_used_at).update(last_used_at=now)


async def _verified_key(raw: str) -> ApiKey | None:
    digest = key_digest(raw)
    cached = _verified.get(digest)
    if cached is not None and time.monotonic() - cached[1] < settings.AROUTER_KEY_CACHE_SECONDS:
        return cached[0]
    lookup = ApiKey.lookup_of(raw)
    api_key = await run_query(_read_key, lookup) if lookup is not None else None
    if api_key is None or not api_key.matches(raw):
        return None
    _verified[digest] = (api_key, time.monotonic())
    return api_key


def refuse_unusable(api_key: ApiKey, now=None) -> None:
    """OpenAI's 401 for a revoked or expired key (also re-checked at every realtime turn)."""
    if api_key.is_revoked:
        raise invalid_api_key("This API key has been revoked.")
    if api_key.is_expired(now):
        raise invalid_api_key("This API key has expired.")


async def authenticate_key(raw: str) -> ApiKey:
    """The usable key for a raw secret (or a playground token), or the OpenAI 401."""
    if raw.startswith(ephemeral.PREFIX):
        api_key = await ephemeral.key_for(raw)
    else:
        api_key = await _verified_key(raw)
        if api_key is None:
            raise invalid_api_key(_incorrect(raw))
    now = timezone.now()
    refuse_unusable(api_key, now)
    if api_key.last_used_is_stale(now):
        await run_query(_touch, api_key, now)
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
        # From META: request.headers would build a mapping of every header for this one.
        header = request.META.get("HTTP_AUTHORIZATION")
        token = bearer_token(header)
        if token is None:
            raise invalid_api_key(MISSING_KEY if not header else _incorrect(header))
        return await authenticate_key(token)
