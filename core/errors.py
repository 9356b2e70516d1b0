"""The OpenAI error envelope: every /v1 failure is `{"error": {message, type, param, code}}`."""

from django.http import JsonResponse

INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
PERMISSION = "permission_error"
NOT_FOUND = "not_found_error"
RATE_LIMIT = "rate_limit_exceeded"
SERVER = "server_error"
UPSTREAM = "upstream_error"

_DEFAULT_TYPES = {
    400: INVALID_REQUEST,
    401: INVALID_REQUEST,
    403: PERMISSION,
    404: INVALID_REQUEST,
    405: INVALID_REQUEST,
    413: INVALID_REQUEST,
    415: INVALID_REQUEST,
    429: RATE_LIMIT,
}


class OpenAIError(Exception):
    """Raised anywhere under /v1; rendered as the OpenAI error envelope."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type or _DEFAULT_TYPES.get(status, SERVER if status < 502 else UPSTREAM)
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JsonResponse:
        response = JsonResponse(self.body(), status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        return response


def invalid_param(message: str, param: str | None, code: str | None = None) -> OpenAIError:
    return OpenAIError(message, status=400, param=param, code=code)


def model_not_found(model: str) -> OpenAIError:
    return OpenAIError(
        f"The model `{model}` does not exist or you do not have access to it.",
        status=404,
        param="model",
        code="model_not_found",
    )


def invalid_api_key(message: str) -> OpenAIError:
    return OpenAIError(message, status=401, code="invalid_api_key")


def server_error() -> OpenAIError:
    return OpenAIError(
        "The server had an error while processing your request. Sorry about that!",
        status=500,
        type=SERVER,
    )


def invalid_url(method: str, path: str, status: int = 404) -> OpenAIError:
    """OpenAI's answer to a route it does not have (404) or a method a route lacks (405)."""
    return OpenAIError(f"Invalid URL ({method} {path})", status=status)


def request_too_large(
    limit: int | None = None, read: int | None = None, param: str | None = None
) -> OpenAIError:
    """413: a body or file past the upload limit, naming the sizes when they are known."""
    message = "Request body too large."
    if limit is not None:
        message = f"Maximum content size limit ({limit} bytes) exceeded"
        message += f" ({read} bytes read)." if read is not None else "."
    return OpenAIError(message, status=413, param=param, code="request_too_large")


def database_unavailable() -> OpenAIError:
    """503: the database is restarting or unreachable; not a crash, so worth a retry."""
    return OpenAIError(
        "The service's database is unavailable right now. Please retry in a few seconds.",
        status=503,
        type=SERVER,
        code="database_unavailable",
        headers={"retry-after": "2"},
    )


_JSON_TYPE_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


def json_type_name(value: object) -> str:
    """How an "Invalid type" error names what a client sent ("an object", "null" ...)."""
    return _JSON_TYPE_NAMES.get(type(value), "a value")
