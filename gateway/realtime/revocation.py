"""Closing a revoked key's realtime sockets at once, in every worker.

Each socket joins its key's Channels group when it opens. `accounts.models.key_revoked`
fires in whichever process revoked the key; this sends the group a message (through
Redis when REDIS_URL is set) and every consumer of that key ends its session. A socket
that misses it (the layer was down) still sees the revocation at its next turn, when the
key is read again from the database.
"""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

KEY_REVOKED = "key.revoked"  # the group message type: consumers handle it in `key_revoked`


def key_group(key_id: int) -> str:
    """The Channels group of the realtime sockets billing a key."""
    return f"realtime-key-{key_id}"


def announce_revoked(sender, key_id: int, **kwargs) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(key_group(key_id), {"type": KEY_REVOKED})
    except Exception:  # the revocation stands; open sockets see it at their next turn
        logger.warning("could not announce the revocation of key %s", key_id, exc_info=True)
