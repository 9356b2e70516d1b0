"""ALLOWED_HOSTS for /v1, which skips the browser middleware where pages get Django's check.

A Host outside ALLOWED_HOSTS is answered 400 in OpenAI's envelope, as pages answer 400.
The verdict is Django's own (request.get_host(): wildcards, DEBUG's defaults), remembered
per Host value: a dictionary lookup per request instead of a few microseconds of parsing.
"""

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, JsonResponse

from core.errors import OpenAIError

# Distinct Host values remembered; past this (someone sending random ones) each further
# value is checked afresh instead of growing the memory.
MAX_REMEMBERED = 1024


class _Verdicts:
    """Host value -> served, valid for one ALLOWED_HOSTS list (a changed setting, as tests
    make with override_settings, is a new list) and one DEBUG value."""

    def __init__(self) -> None:
        self._allowed_hosts: object = None
        self._debug = False
        self._served: dict[str, bool] = {}

    def serves(self, request: HttpRequest) -> bool:
        allowed_hosts, debug = settings.ALLOWED_HOSTS, settings.DEBUG
        if allowed_hosts is not self._allowed_hosts or debug != self._debug:
            self._allowed_hosts, self._debug, self._served = allowed_hosts, debug, {}
        raw = request._get_raw_host()
        served = self._served.get(raw)
        if served is None:
            served = _django_serves(request)
            if len(self._served) < MAX_REMEMBERED:
                self._served[raw] = served
        return served


def _django_serves(request: HttpRequest) -> bool:
    try:
        request.get_host()
    except DisallowedHost:
        return False
    return True


_verdicts = _Verdicts()


def refuse_disallowed_host(request: HttpRequest) -> JsonResponse | None:
    """The 400 envelope for a request to a host this server does not serve, else None."""
    if _verdicts.serves(request):
        return None
    return OpenAIError(
        "Invalid Host header: this server does not serve that host name.",
        status=400,
        code="invalid_host",
    ).response()
