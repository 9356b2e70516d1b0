"""The 429s and 403 of limits, in OpenAI's shapes."""

from core.errors import PERMISSION, OpenAIError


def requests_limited(message: str, headers: dict[str, str]) -> OpenAIError:
    return OpenAIError(
        message, status=429, type="requests", code="rate_limit_exceeded", headers=headers
    )


def insufficient_quota(scope: str) -> OpenAIError:
    return OpenAIError(
        f"You exceeded your current quota: the {scope}'s monthly budget is spent. Raise the "
        "budget on the keys page, or wait for next month.",
        status=429,
        type="insufficient_quota",
        code="insufficient_quota",
    )


def endpoint_forbidden(endpoint: str) -> OpenAIError:
    return OpenAIError(
        f"This API key may not call {endpoint}. Its endpoints are limited on the keys page.",
        status=403,
        type=PERMISSION,
        code="endpoint_not_allowed",
    )
