"""The audio chat cascade with its text model on the fault server, which records every
request: a test reads what the cascade asked its text model where it crosses the wire."""

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from django.conf import settings

from tests.fault_server import FaultServer
from tests.upstream_helpers import catalog_from, model_table, upstream_table

# The default catalog's cascade (local/audio-chat, and its aliases) and its text model.
CASCADE = 'provider = "cascade"\ntarget = "local/smollm2-135m-instruct"\n'
FAULT_REPLY = "Hello from the fault server."  # what the fault server's chat model answers


def cascade_system_prompt() -> str:
    """What local/audio-chat tells its text model first (options.system_prompt)."""
    from gateway.catalog import catalog

    return catalog().get("local/audio-chat").options["system_prompt"]


def catalog_asking(server: FaultServer) -> str:
    """The default catalog, but local/audio-chat's text model is `server`'s chat model."""
    text = Path(settings.AROUTER_CATALOG).read_text()
    assert text.count(CASCADE) == 1, "local/audio-chat no longer reads as expected"
    text = text.replace(CASCADE, 'provider = "cascade"\ntarget = "fault/chat"\n')
    text += upstream_table("fault", server.url("ok"))
    return text + model_table("fault/chat", "chat", "fault", "up-chat")


@contextlib.contextmanager
def text_model_on_fault_server(folder: Path) -> Iterator[Callable[[], list[dict]]]:
    """Serve that catalog for the block; yields a function giving the chat bodies the
    text model has received so far, in order."""
    server = FaultServer().start()
    try:
        with catalog_from(folder / "catalog.toml", catalog_asking(server)):
            yield lambda: [
                seen.json for seen in server.seen("ok") if seen.path == "/v1/chat/completions"
            ]
    finally:
        server.stop()
