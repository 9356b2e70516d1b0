"""AROUTER_PRELOAD: load named catalog models when the server starts, not on first use.

Loading runs on one background thread so the server answers at once; a request that
arrives before its model is ready waits on that provider's own load lock, as it would on
first use. An id that is not in the catalog stops start-up with a clear message.
"""

import logging
import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from gateway.providers.base import Preloadable

logger = logging.getLogger(__name__)


def preload_providers(model_ids: list[str]) -> list[Preloadable]:
    """The providers that will be preloaded for `model_ids` (validated, not yet loaded)."""
    from gateway.catalog import catalog
    from gateway.providers import provider_for

    providers = []
    for model_id in model_ids:
        entry = catalog().models.get(model_id)
        if entry is None:
            raise ImproperlyConfigured(f"AROUTER_PRELOAD names {model_id!r}, not in the catalog")
        provider = provider_for(entry)
        if isinstance(provider, Preloadable):
            providers.append(provider)
        else:
            logger.info("AROUTER_PRELOAD: %s has nothing to preload", model_id)
    return providers


def _load_all(providers: list[Preloadable]) -> None:
    for provider in providers:
        try:
            provider.preload()
        except Exception:
            # The model will be tried again (and its error shown) on first use.
            logger.exception("Preloading %s failed", getattr(provider, "entry", provider))


def start_preload() -> threading.Thread | None:
    """Begin loading every AROUTER_PRELOAD model in the background (None if none named)."""
    if not settings.AROUTER_PRELOAD:
        return None
    providers = preload_providers(list(settings.AROUTER_PRELOAD))
    thread = threading.Thread(target=_load_all, args=(providers,), name="preload", daemon=True)
    thread.start()
    return thread
