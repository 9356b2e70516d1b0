"""Reading a streamed response from Django's test client, as the server would."""

from asgiref.sync import async_to_sync


def body_of(response) -> bytes:
    """The whole body; an async stream is drained to its end (which bills the request)."""
    if not response.streaming:
        return response.content

    async def drain() -> bytes:
        return b"".join([bytes(chunk) async for chunk in response.streaming_content])

    if response.is_async:
        return async_to_sync(drain)()
    return b"".join(response.streaming_content)
