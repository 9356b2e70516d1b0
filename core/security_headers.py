"""Content-Security-Policy for every page, and the page headers for /v1/docs.

Django 5.2 has no CSP support of its own. The pages load scripts and styles from /static/
only (no inline script, style or event handler), so the policy can stay strict.

/v1 requests skip the browser middleware (arouter.middleware), so the one HTML page under
/v1, django-ninja's API docs, gets its headers from `page_headers`, set as the NinjaAPI's
docs_decorator.
"""

from collections.abc import Callable
from functools import wraps

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware


def _add_policy(response: HttpResponseBase) -> HttpResponseBase:
    # setdefault: a view with its own, narrower policy keeps it.
    response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
    return response


@sync_and_async_middleware
def content_security_policy(get_response: Callable) -> Callable:
    """BROWSER_MIDDLEWARE: adds the site's Content-Security-Policy to every page response."""
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponseBase:
            return _add_policy(await get_response(request))

    else:

        def middleware(request: HttpRequest) -> HttpResponseBase:
            return _add_policy(get_response(request))

    return middleware


def page_headers(view: Callable) -> Callable:
    """What the browser middleware gives pages, for a page served on the /v1 fast path: the
    policy, no framing, no content sniffing, the same referrer policy."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponseBase:
        response = _add_policy(view(request, *args, **kwargs))
        response.headers.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", settings.SECURE_REFERRER_POLICY)
        return response

    return wrapped
