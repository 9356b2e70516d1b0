"""Where the OpenAI-compatible API lives, and the id every request to it carries."""

import uuid

API_PREFIX = "/v1/"


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIX)


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"
