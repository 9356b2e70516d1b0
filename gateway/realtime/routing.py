"""Websocket routes: OpenAI's realtime endpoint, served by the Channels consumer."""

from django.urls import path

from gateway.realtime.consumer import RealtimeConsumer

websocket_urlpatterns: list = [
    path("v1/realtime", RealtimeConsumer.as_asgi()),
]
