"""Browser-page middleware that the /v1 API does not pay for.

Sessions, users, CSRF, messages, static files and security headers matter to the pages
(dashboard, playground, admin) but not to API calls authenticated by key. Most of Django's
middleware is synchronous underneath: under ASGI each one costs thread hops per request,
and WhiteNoise (sync only) would even push every API view into a thread. So that chain
is built here, the way Django builds MIDDLEWARE, and only requests outside /v1 enter it.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest
from django.utils.module_loading import import_string

from core.api_requests import is_api_path


def is_api_request(request: HttpRequest) -> bool:
    return is_api_path(request.path)


class BrowserMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        self._adapter = BaseHandler()
        self._view_hooks: list = []
        self.pages = self._build_chain(get_response)
        if self.is_async:
            markcoroutinefunction(self)
            self.process_view = self._process_view_async
        else:
            self.process_view = self._process_view_sync

    def _build_chain(self, handler):
        """Wrap `handler` in settings.BROWSER_MIDDLEWARE, adapting sync/async like Django."""
        handler_is_async = self.is_async
        for path in reversed(settings.BROWSER_MIDDLEWARE):
            middleware = import_string(path)
            if not handler_is_async and getattr(middleware, "sync_capable", True):
                middleware_is_async = False
            else:
                middleware_is_async = getattr(middleware, "async_capable", False)
            adapted = self._adapter.adapt_method_mode(
                middleware_is_async, handler, handler_is_async
            )
            instance = middleware(adapted)
            if hasattr(instance, "process_view"):
                # CSRF checks live in process_view; the wrapper forwards them for pages.
                self._view_hooks.insert(
                    0, self._adapter.adapt_method_mode(self.is_async, instance.process_view)
                )
            handler = convert_exception_to_response(instance)
            handler_is_async = middleware_is_async
        return self._adapter.adapt_method_mode(self.is_async, handler, handler_is_async)

    def __call__(self, request: HttpRequest):
        if is_api_request(request):
            return self.get_response(request)
        return self.pages(request)

    def _process_view_sync(self, request, view, args, kwargs):
        if is_api_request(request):
            return None
        for hook in self._view_hooks:
            if (response := hook(request, view, args, kwargs)) is not None:
                return response
        return None

    async def _process_view_async(self, request, view, args, kwargs):
        if is_api_request(request):
            return None
        for hook in self._view_hooks:
            if (response := await hook(request, view, args, kwargs)) is not None:
                return response
        return None
