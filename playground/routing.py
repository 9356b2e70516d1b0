"""Websocket routes (the realtime consumer registers here)."""

websocket_urlpatterns: list = []
