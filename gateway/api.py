"""The one NinjaAPI mounted at /v1, and the rule that every failure is an OpenAI envelope."""

import logging

from django.core.exceptions import BadRequest, RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser

from accounts.auth import ApiKeyAuth
from core import errors
from core.multipart import MalformedMultipart
from core.security_headers import page_headers
from gateway.chat.request import load_json
from gateway.routers import chat, models, realtime, speech, transcriptions

logger = logging.getLogger(__name__)

# Where ninja says a value came from; not part of the parameter name a client sent.
_LOCATION_PREFIXES = {"body", "form", "query", "path", "file", "header", "cookie", "payload"}


class StrictJSONParser(Parser):
    """JSON bodies read as chat's are: no NaN or Infinity, no nesting deep enough to
    exhaust the parser's recursion (ninja reports any failure here as a 400)."""

    def parse_body(self, request: HttpRequest):
        return load_json(request.body)


api = NinjaAPI(
    title="ARouter",
    version="1",
    description="OpenAI-compatible audio gateway",
    auth=ApiKeyAuth(),
    urls_namespace="v1",
    parser=StrictJSONParser(),
    # The docs page skips the browser middleware like all of /v1; it gets their headers here.
    docs_decorator=page_headers,
)
api.add_router("/models", models.router)
api.add_router("/chat", chat.router)
api.add_router("/audio", speech.router)
api.add_router("/audio", transcriptions.router)
api.add_router("/realtime", realtime.router)


def validation_param(loc: tuple | list) -> str | None:
    parts = [str(p) for p in loc if str(p) not in _LOCATION_PREFIXES]
    if not parts:
        return None
    param = parts[0]
    for part in parts[1:]:
        param += f"[{part}]" if part.isdigit() else f".{part}"
    return param


@api.exception_handler(errors.OpenAIError)
def openai_error(request: HttpRequest, exc: errors.OpenAIError) -> HttpResponse:
    return exc.response()


@api.exception_handler(ValidationError)
def validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    first = exc.errors[0] if exc.errors else {}
    param = validation_param(first.get("loc", ()))
    message = first.get("msg", "Invalid request")
    if param:
        message = f"Invalid value for '{param}': {message}"
    return errors.invalid_param(message, param=param).response()


@api.exception_handler(AuthenticationError)
def authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    from accounts.auth import MISSING_KEY

    return errors.invalid_api_key(MISSING_KEY).response()


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, errors.OpenAIError):  # our parser's refusal, wrapped by ninja
        return exc.__cause__.response()
    return errors.OpenAIError(str(exc), status=exc.status_code).response()


@api.exception_handler(Http404)
def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return errors.invalid_url(request.method, request.path).response()


@api.exception_handler(RequestDataTooBig)
def body_too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return errors.request_too_large().response()


@api.exception_handler(SuspiciousOperation)
def malformed_request(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
    return errors.OpenAIError(f"Malformed request: {exc}", status=400).response()


@api.exception_handler(MultiPartParserError)
def malformed_multipart(request: HttpRequest, exc: MultiPartParserError) -> HttpResponse:
    if isinstance(exc, MalformedMultipart):
        return errors.invalid_param(str(exc), param=exc.param).response()
    return errors.invalid_param(
        f"Could not parse the multipart/form-data body: {exc}", param=None
    ).response()


@api.exception_handler(BadRequest)
def bad_request(request: HttpRequest, exc: BadRequest) -> HttpResponse:
    # Django's own refusals of a body it cannot decode (a form that is not UTF-8 …).
    return errors.invalid_param(str(exc) or "Malformed request.", param=None).response()


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
def database_unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    # Not a crash: the database is restarting or unreachable. Connections are made afresh
    # on the next request (core.hot_path_db, the pool), so service resumes by itself.
    logger.warning("database unavailable for %s %s: %s", request.method, request.path, exc)
    return errors.database_unavailable().response()


@api.exception_handler(Exception)
def unhandled(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("Unhandled error in %s %s", request.method, request.path)
    return errors.server_error().response()
