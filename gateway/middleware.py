"""Request ids on every response, and the OpenAI envelope for errors Django makes itself."""

import json

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from core.api_requests import is_api_path, new_request_id
from core.errors import OpenAIError, invalid_url, request_too_large, server_error
from gateway.hosts import refuse_disallowed_host


def _is_envelope(response: HttpResponseBase) -> bool:
    if response.streaming or not response.get("Content-Type", "").startswith("application/json"):
        return False
    try:
        return "error" in json.loads(response.content)
    except ValueError:
        return False


def _finish(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    is_api_error = is_api_path(request.path) and response.status_code >= 400
    if is_api_error and not _is_envelope(response):
        response = _envelope_for(request, response.status_code).response()
    response["x-request-id"] = request.request_id
    return response


def _envelope_for(request: HttpRequest, status: int) -> OpenAIError:
    if status in (404, 405):
        return invalid_url(request.method, request.path, status)
    if status == 413:
        return request_too_large()
    if status >= 500:
        error = server_error()
        error.status = status
        return error
    return OpenAIError("The request could not be processed.", status=status)


def _refused_host(request: HttpRequest) -> HttpResponseBase | None:
    # Pages get Django's own ALLOWED_HOSTS check from the browser middleware.
    return refuse_disallowed_host(request) if is_api_path(request.path) else None


class RequestIdMiddleware:
    """Gives each request an `x-request-id` and keeps /v1 errors in OpenAI's shape.

    Django answers some requests before any view runs (unknown URLs, wrong methods, bodies
    too large); under /v1 those answers are rewritten to the error envelope.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.is_async:
            return self._acall(request)
        request.request_id = new_request_id()
        if (refused := _refused_host(request)) is not None:
            return _finish(request, refused)
        return _finish(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        request.request_id = new_request_id()
        if (refused := _refused_host(request)) is not None:
            return _finish(request, refused)
        return _finish(request, await self.get_response(request))
