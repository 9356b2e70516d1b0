"""The usage ledger: one row per /v1 request that reached a provider."""

from datetime import datetime
from decimal import Decimal

from django.db import models
from django.utils import timezone

# The status of a row whose request never finished (its process died mid-stream); a stream's
# row carries it from the moment the stream starts until the stream ends.
INTERRUPTED = 0


def billing_month_start() -> datetime:
    """When the current billing month began: budgets and "spend this month" count from here
    (calendar months in UTC)."""
    return timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def spent_this_month(*, api_key_id: int | None = None, team_id: int | None = None) -> Decimal:
    """What a key (or a team) has been charged since the billing month began."""
    scope = {"api_key_id": api_key_id} if api_key_id is not None else {"team_id": team_id}
    rows = UsageRecord.objects.filter(created_at__gte=billing_month_start(), **scope)
    return rows.aggregate(total=models.Sum("cost"))["total"] or Decimal(0)


class UsageRecordQuerySet(models.QuerySet):
    def finished(self) -> "UsageRecordQuerySet":
        """Rows of requests that have ended (not streams still running, or cut off)."""
        return self.exclude(status_code=INTERRUPTED)


class UsageRecord(models.Model):
    # No index of their own: the (team, -created_at) and (api_key, -created_at) indexes
    # below begin with these columns and serve every lookup by them (cascading deletes
    # too). Two fewer indexes are two fewer pages written with every request's row.
    api_key = models.ForeignKey(
        "accounts.ApiKey", models.CASCADE, related_name="usage_records", db_index=False
    )
    team = models.ForeignKey(
        "accounts.Team", models.CASCADE, related_name="usage_records", db_index=False
    )
    model = models.CharField(max_length=200)
    endpoint = models.CharField(max_length=100)
    status_code = models.PositiveSmallIntegerField()
    request_id = models.CharField(max_length=64, db_index=True)
    provider = models.CharField(max_length=100, blank=True)
    attempts = models.PositiveSmallIntegerField(default=1)
    audio_seconds_in = models.FloatField(default=0)
    audio_seconds_out = models.FloatField(default=0)
    characters = models.PositiveIntegerField(default=0)
    text_tokens_in = models.PositiveIntegerField(default=0)
    text_tokens_out = models.PositiveIntegerField(default=0)
    audio_tokens_in = models.PositiveIntegerField(default=0)
    audio_tokens_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=16, decimal_places=8, default=Decimal(0))
    latency_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    objects = UsageRecordQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["team", "-created_at"]),
            models.Index(fields=["api_key", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model} {self.endpoint} {self.status_code} ${self.cost}"
