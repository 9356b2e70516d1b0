"""OpenAI's realtime websocket endpoint, `/v1/realtime` (see `consumer`)."""
