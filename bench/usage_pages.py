"""Usage review on 100,000 ledger rows: how long the pages and the CSV export take.

A throwaway data folder (SQLite, or DATABASE_URL if set), 100,000 rows over the last 30 days, four
keys and five models; each page is rendered in process through Django's test client (what
the server does minus the socket). The baseline is a bare `count()` of the team's rows, the
least any page over them could cost.

    .venv/bin/python bench/usage_pages.py [--rows 100000]
"""

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed(action, repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def seed(team, keys, rows: int) -> None:
    from django.utils import timezone

    from usage.models import UsageRecord

    models = ["local/whisper-base", "local/piper", "local/audio-chat", "openai/tts-1", "m5"]
    now = timezone.now()
    rng = random.Random(7)
    batch = []
    for n in range(rows):
        batch.append(
            UsageRecord(
                api_key=keys[n % len(keys)],
                team=team,
                model=models[n % len(models)],
                endpoint="/v1/audio/speech",
                status_code=200 if n % 50 else 500,
                request_id=f"req_{n:08x}",
                characters=rng.randint(10, 4000),
                cost=Decimal(rng.randint(1, 10_000)) / 1_000_000,
                latency_ms=rng.randint(5, 3000),
                created_at=now - timedelta(seconds=rng.randint(0, 29 * 86400)),
            )
        )
        if len(batch) == 5000:
            UsageRecord.objects.bulk_create(batch)
            batch = []
    UsageRecord.objects.bulk_create(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    os.environ["AROUTER_DATA_DIR"] = tempfile.mkdtemp(prefix="arouter-usage-bench-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arouter.settings")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    from accounts.models import ApiKey, Membership, Team
    from usage.models import UsageRecord

    call_command("migrate", verbosity=0)
    team = Team.objects.create(name="bench")
    user = User.objects.create_user("bench", password="bench-password-1")
    Membership.objects.create(team=team, user=user, role="owner")
    keys = [ApiKey.issue(team, name=f"key{n}").api_key for n in range(4)]
    started = time.perf_counter()
    seed(team, keys, args.rows)
    print(f"seeded {args.rows:,} rows in {time.perf_counter() - started:.1f} s")

    client = Client(HTTP_HOST="127.0.0.1")  # an allowed host, as a browser would send
    client.force_login(user)
    base = f"/teams/{team.pk}/usage/"

    def page(query: str = "") -> None:
        assert client.get(base + "?period=30d" + query).status_code == 200

    def export() -> None:
        response = client.get(base + "export.csv?period=30d")
        count = 0

        async def drain() -> None:
            nonlocal count
            async for chunk in response.streaming_content:
                count += bytes(chunk).count(b"\n")

        from asgiref.sync import async_to_sync

        async_to_sync(drain)()
        assert count == args.rows + 1, count

    baseline = timed(lambda: UsageRecord.objects.filter(team=team).count())
    figures = {
        "count() baseline": baseline,
        "usage page, 30 days, by key": timed(lambda: page()),
        "usage page, by model, one key, page 50": timed(
            lambda: page(f"&split=model&key={keys[0].pk}&page=50")
        ),
        "usage page, failed only": timed(lambda: page("&status=error")),
        f"CSV export, all {args.rows:,} rows": timed(export, repeat=1),
    }
    print(f"\n{'figure':42} {'seconds':>9} {'x baseline':>11}")
    for name, seconds in figures.items():
        print(f"{name:42} {seconds:9.3f} {seconds / baseline:11.1f}")


if __name__ == "__main__":
    main()
