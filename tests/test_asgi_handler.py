"""The ASGI handler: API requests are served on the event loop alone, pages keep Django's
per-request thread and its request signals."""

import threading
from io import BytesIO

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core import signals
from django.core.exceptions import RequestAborted
from django.utils.http import parse_header_parameters

from arouter.asgi_handler import GatewayASGIHandler, GatewayRequest


def http_scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def get(path: str) -> int:
    communicator = ApplicationCommunicator(GatewayASGIHandler(), http_scope("GET", path, []))
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(timeout=10)
    while (await communicator.receive_output(timeout=10)).get("more_body"):
        pass
    await communicator.wait(timeout=10)
    return start["status"]


@pytest.fixture
def finishing_threads():
    """The thread each request's response was closed on (where request_finished fires)."""
    seen: list[threading.Thread] = []

    def remember(**kwargs) -> None:
        seen.append(threading.current_thread())

    signals.request_finished.connect(remember)
    yield seen
    signals.request_finished.disconnect(remember)


@pytest.mark.asyncio
async def test_api_requests_send_no_request_finished(finishing_threads, settings):
    settings.AROUTER_DB_THREADS = 2  # as served: the queries on kept threads
    assert await get("/v1/no-such-route") == 404
    assert await get("/v1/no-such-route") == 404

    assert finishing_threads == []


@pytest.mark.asyncio
async def test_api_requests_without_kept_threads_finish_as_django_does(finishing_threads, settings):
    settings.AROUTER_DB_THREADS = 0
    assert await get("/v1/no-such-route") == 404

    assert len(finishing_threads) == 1
    assert finishing_threads[0] is not threading.main_thread()


@pytest.mark.asyncio
async def test_pages_still_get_a_thread_per_request(finishing_threads):
    assert await get("/accounts/login/") == 200
    assert await get("/accounts/login/") == 200

    assert len(finishing_threads) == 2
    assert finishing_threads[0] is not finishing_threads[1]


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data; boundary=f1e7a3c9b2d84e6a",  # as the SDKs send it
        "Multipart/Form-Data;boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
        "  multipart/form-data ;  BOUNDARY=a'()+_,-./:?b  ",
        'multipart/form-data; boundary="a quoted one"',  # the rest: read by Django
        "multipart/form-data; boundary=abc; charset=latin-1",
        "multipart/form-data; boundary=",
        "multipart/mixed; boundary=abc",
        "application/json",
    ],
)
def test_a_content_type_reads_as_django_reads_it(content_type):
    headers = [(b"content-type", content_type.encode())]
    request = GatewayRequest(http_scope("POST", "/v1/audio/transcriptions", headers), BytesIO())
    assert (request.content_type, request.content_params) == parse_header_parameters(content_type)


def messages(*pieces: bytes):
    """An ASGI receive that gives `pieces` as one request body, then a disconnect."""
    queue = [{"type": "http.request", "body": piece, "more_body": True} for piece in pieces]
    queue[-1]["more_body"] = False
    queue.append({"type": "http.disconnect"})

    async def receive() -> dict:
        return queue.pop(0)

    return receive


async def test_a_body_within_the_memory_limit_is_held_in_memory(settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 10
    body = await GatewayASGIHandler()._read_api_body(messages(b"abcd", b"", b"efgh"))
    assert isinstance(body, BytesIO)
    assert body.read() == b"abcdefgh"


async def test_a_body_past_the_memory_limit_is_spooled_whole(settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 10
    body = await GatewayASGIHandler()._read_api_body(messages(b"abcdefgh", b"ijkl", b"mnop"))
    with body:
        assert body._rolled  # on disk, as Django's read_body would have it
        assert body.read() == b"abcdefghijklmnop"


async def test_a_client_gone_mid_body_aborts_the_request():
    receive = messages(b"abcd")
    await receive()  # the body's only message lost: the disconnect comes next

    with pytest.raises(RequestAborted):
        await GatewayASGIHandler()._read_api_body(receive)
