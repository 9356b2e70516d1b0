"""Counters for the database limiter (used when there is no Redis, or Redis is down)."""

from django.db import models


class Counter(models.Model):
    """A named integer: requests in a minute, requests in flight, micro-dollars this month."""

    name = models.CharField(max_length=120, unique=True)
    value = models.BigIntegerField(default=0)
    # A counter past this instant counts from zero again (minute windows; leaked slots).
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name}={self.value}"
