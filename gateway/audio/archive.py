"""Keeping uploaded audio, only where a setting asks for it (AROUTER_KEEP_UPLOADS_DIR).

By default nothing a client uploads outlives its request: small uploads live in memory,
larger ones in a temporary file that Django deletes once the request is answered. A team
that must keep what it was sent (audits, evaluation sets) names a folder; each upload is
then copied there, filed by team and named by the request id its usage record carries.
"""

import asyncio
import re
import shutil
from pathlib import Path

from django.conf import settings


def _safe(name: str) -> str:
    # A client's file name, reduced to what is harmless in a path.
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name)[-80:] or "audio"


def _write(folder: Path, name: str, source: bytes | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if isinstance(source, str):
        shutil.copyfile(source, target)
    else:
        target.write_bytes(source)
    return target


async def keep(team_id: int, request_id: str, uploads: list[tuple[str, bytes | str]]) -> list[Path]:
    """Copy each (file name, bytes or path) upload of a request into the archive, if one is
    configured; nothing happens (not even a thread hop) when none is."""
    root = settings.AROUTER_KEEP_UPLOADS_DIR
    if root is None or not uploads:
        return []
    folder = root / str(team_id)
    return [
        await asyncio.to_thread(_write, folder, f"{request_id}-{n}-{_safe(name)}", data)
        for n, (name, data) in enumerate(uploads, start=1)
    ]
