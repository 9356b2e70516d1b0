"""bench/load.py at a size for CI: mixed requests from concurrent clients against a
two-worker server, then the ledger checked against every response."""

import sys
from pathlib import Path

from django.conf import settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import load


def test_concurrent_mixed_load_loses_nothing_and_bills_exactly():
    # On the suite's own database server (a fresh database beside it) and Redis, if any.
    report = load.run(
        requests=60,
        clients=8,
        workers=2,
        database_url=settings.DATABASE_URL,
        redis_url=settings.REDIS_URL,
    )

    assert report.server_errors == 0, report.statuses
    assert sum(report.statuses.values()) == 60
    assert len(report.billed) == 45  # all but the model listings
    assert report.lost_or_doubled == 0
    assert report.ledger_total == report.response_total
    assert report.ledger_total > 0
