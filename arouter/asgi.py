"""ASGI entry point: HTTP through Django, websockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arouter.settings")
# Django must be set up before anything imports models (consumers, auth middleware).
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from gateway.providers.preload import start_preload  # noqa: E402
from playground.routing import websocket_urlpatterns  # noqa: E402
from playground.websocket_auth import WebsocketAuthMiddleware  # noqa: E402

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
