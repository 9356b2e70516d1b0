"""ASGI entry point: HTTP through Django, websockets through Channels."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arouter.settings")

from arouter.asgi_handler import get_gateway_asgi_application

# Django must be set up before anything imports models (consumers, auth middleware).
django_application = get_gateway_asgi_application()

from django.core import signals  # noqa: E402
from django.db import close_old_connections  # noqa: E402

# Django closes stale connections as each request starts. Under ASGI a request's sync work
# runs on a thread made for that request, which holds no connection yet, so the check
# would only cost a thread hop per request. The close at request end stays: it runs on the
# request's own thread and releases what the request opened.
signals.request_started.disconnect(close_old_connections)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from gateway.providers.preload import start_preload  # noqa: E402
from gateway.realtime.auth import WebsocketAuthMiddleware  # noqa: E402
from gateway.realtime.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        # No blanket Origin check: API clients send none, and browser apps using a key
        # (OpenAI's subprotocol) may live on any origin. The Origin matters only for
        # session (cookie) auth, so the consumer checks it there.
        "websocket": WebsocketAuthMiddleware(URLRouter(websocket_urlpatterns)),
    }
)

# AROUTER_PRELOAD: start loading the named models now, in the background.
start_preload()
