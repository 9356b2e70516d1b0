"""Server-sent events as /v1 streams send them: one `data:` line per event, a blank line."""

import json
from typing import Any


def sse_event(payload: dict[str, Any] | str) -> bytes:
    """One event; a dict goes as compact JSON, a string (`[DONE]`) as it is."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()
