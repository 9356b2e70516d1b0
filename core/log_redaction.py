"""A logging filter that takes secrets out of every record before any handler sees it.

API keys, playground tokens and bearer credentials can reach a log through an exception
message, a library's debug line or a formatted argument; all of them are replaced by a
masked form that still tells keys apart (the first characters and the last four).
"""

import logging
import re

SECRET = re.compile(
    r"(?P<prefix>lr_live_|ek_|sk-)(?P<body>[A-Za-z0-9_\-~.]{8,})"
    r"|(?P<scheme>[Bb]earer\s+)(?P<token>[^\s'\",]{8,})"
)


def _mask(match: re.Match) -> str:
    if match.group("scheme"):
        return f"{match.group('scheme')}****"
    body = match.group("body")
    return f"{match.group('prefix')}{body[:4]}****{body[-4:]}"


def redact(text: str) -> str:
    return SECRET.sub(_mask, text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None:
            # Formatted once here, redacted, and cached where handlers look for it.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
