"""Recent spoken replies, so a later turn can hand one back as `audio: {"id": ...}`.

OpenAI keeps `message.audio` on its side until `expires_at`; a client then sends the
assistant turn as just the id. We keep the transcript (what the text model needs for the
next turn), keyed by id and scoped to the team that got the reply, in Django's cache: Redis
when REDIS_URL is set, which every worker shares. Without Redis the cache is per process,
so several workers need REDIS_URL for ids to resolve across them.
"""

import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from core.errors import invalid_param

KEY_PREFIX = "arouter:chat-audio:"


@dataclass(frozen=True)
class StoredReply:
    id: str
    transcript: str
    expires_at: int
    team_id: int


def new_audio_id() -> str:
    return f"audio_{secrets.token_hex(16)}"


def expiry() -> int:
    """When a reply made now stops being referable (Unix seconds)."""
    return int(time.time()) + settings.AROUTER_CHAT_AUDIO_TTL


async def remember(audio_id: str, transcript: str, expires_at: int, team_id: int) -> None:
    ttl = max(1, expires_at - int(time.time()))
    value = {"transcript": transcript, "expires_at": expires_at, "team_id": team_id}
    await cache.aset(KEY_PREFIX + audio_id, value, timeout=ttl)


async def recall(audio_id: str, team_id: int, param: str) -> StoredReply:
    """The stored reply, or the 400 a client sees for an unknown, expired or foreign id."""
    value = await cache.aget(KEY_PREFIX + audio_id)
    if not value or value["team_id"] != team_id or value["expires_at"] < time.time():
        raise invalid_param(
            f"Audio with id '{audio_id}' not found or has expired.",
            param=param,
            code="invalid_value",
        )
    return StoredReply(
        id=audio_id,
        transcript=value["transcript"],
        expires_at=value["expires_at"],
        team_id=team_id,
    )
