"""Login throttling: a few failed attempts per username and address, then a pause.

Counted in Django's cache (Redis when REDIS_URL is set, so every worker shares the count).
"""

from django.conf import settings
from django.core.cache import cache

WINDOW_SECONDS = 15 * 60


def _key(username: str, address: str) -> str:
    return f"login-failures:{username.strip().lower()}:{address}"


def is_locked(username: str, address: str) -> bool:
    return cache.get(_key(username, address), 0) >= settings.AROUTER_LOGIN_ATTEMPTS


def record_failure(username: str, address: str) -> None:
    key = _key(username, address)
    # add() starts the window with the first failure; incr() counts within it.
    if not cache.add(key, 1, WINDOW_SECONDS):
        try:
            cache.incr(key)
        except ValueError:  # expired between add() and incr()
            cache.add(key, 1, WINDOW_SECONDS)


def clear(username: str, address: str) -> None:
    cache.delete(_key(username, address))
