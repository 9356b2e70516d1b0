"""Login throttling: a few failed attempts per username and address, then a pause.

Counted in Django's cache (Redis when REDIS_URL is set, so every worker shares the count).
The site's log-in and the admin's share the same counters.
"""

import hashlib
import unicodedata

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

WINDOW_SECONDS = 15 * 60
# The error code and text of a log-in form refused while paused (answered with a 429).
LOCKED = "login_throttled"
LOCKED_MESSAGE = "Too many failed log-in attempts. Wait 15 minutes, then try again."


def client_address(request: HttpRequest | None) -> str:
    return request.META.get("REMOTE_ADDR", "") if request is not None else ""


def canonical_username(username: str) -> str:
    """The form every spelling of one username counts under.

    Django's username field applies NFKC before looking the user up, so 'owner' in
    fullwidth letters logs in as 'owner': counting the raw text would give each look-alike
    spelling its own allowance. Case is folded too (casefold, then NFKC again, since
    folding can leave text that is no longer normalised).
    """
    folded = unicodedata.normalize("NFKC", username).strip().casefold()
    return unicodedata.normalize("NFKC", folded)


def _key(username: str, address: str) -> str:
    # Hashed: a username is any text of any length, and cache keys should be neither.
    digest = hashlib.sha256(canonical_username(username).encode(errors="surrogatepass")).hexdigest()
    return f"login-failures:{digest}:{address}"


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
