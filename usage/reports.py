"""Usage review queries: the filters a page or an export applies, totals and daily series.

Everything is aggregated in the database; Python only sees one page of rows or one row per
day and group.
"""

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.http import QueryDict

from usage.models import INTERRUPTED, UsageRecord

# Refused, failed, or interrupted (the process died mid-stream).
FAILED = Q(status_code__gte=400) | Q(status_code=INTERRUPTED)
PERIODS = {"today": "Today", "7d": "Last 7 days", "30d": "Last 30 days", "month": "This month"}
# The longest period a page or an export covers: a chart bar per day, one query for all.
MAX_DAYS = 400


def _day(raw: str | None, which: str, errors: list[str]) -> date | None:
    """A YYYY-MM-DD date from the query; anything else is explained and left out."""
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        errors.append(f"The {which} date “{raw[:40]}” is not a date (YYYY-MM-DD); ignored.")
        return None


def _bounded(start: date, end: date, today: date, errors: list[str]) -> tuple[date, date]:
    """The asked range within what can hold usage: nothing after today (which also keeps
    `end + 1 day` from overflowing at 9999-12-31), at most MAX_DAYS long, start <= end."""
    if end > today:
        errors.append("There is no usage after today; showing up to today.")
        end = today
    if start > end:
        errors.append("The start date is after the end date; showing the end day only.")
        start = end
    if (end - start).days >= MAX_DAYS:
        start = end - timedelta(days=MAX_DAYS - 1)
        errors.append(
            f"A period is at most {MAX_DAYS} days; showing the {MAX_DAYS} days to the end date."
        )
    return start, end


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _period(name: str, today: date) -> tuple[date, date]:
    if name == "today":
        return today, today
    if name == "7d":
        return today - timedelta(days=6), today
    if name == "30d":
        return today - timedelta(days=29), today
    return today.replace(day=1), today


def _key_id(raw: str) -> int | None:
    """A key's id from the query, or None: ASCII digits (int() refuses some that isdigit()
    accepts, such as '²') few enough for the database's 64-bit integer."""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


@dataclass(frozen=True)
class UsageFilters:
    """What the page, its table and its CSV export show: one parser serves all three."""

    start: date
    end: date  # inclusive
    period: str = ""
    key_id: int | None = None
    model: str = ""
    endpoint: str = ""
    status: str = ""  # "", "ok" or "error"
    request_id: str = ""
    errors: list[str] = field(default_factory=list, compare=False)

    @classmethod
    def from_query(cls, query: QueryDict, today: date) -> "UsageFilters":
        errors: list[str] = []
        period = query.get("period", "")
        start = _day(query.get("start"), "start", errors)
        end = _day(query.get("end"), "end", errors)
        if period in PERIODS or not (start or end):
            start, end = _period(period or "month", today)
            period = period or "month"
        else:
            period = ""
            start, end = _bounded(start or today.replace(day=1), end or today, today, errors)
        status = query.get("status", "")
        return cls(
            start=start,
            end=end,
            period=period,
            key_id=_key_id(query.get("key", "")),
            model=query.get("model", "").strip(),
            endpoint=query.get("endpoint", "").strip(),
            status=status if status in {"ok", "error"} else "",
            request_id=query.get("request_id", "").strip(),
            errors=errors,
        )

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    def apply(self, records: QuerySet[UsageRecord]) -> QuerySet[UsageRecord]:
        # A half-open range of instants, so the (team, created_at) index serves it.
        records = records.filter(
            created_at__gte=_midnight(self.start),
            created_at__lt=_midnight(self.end + timedelta(days=1)),
        )
        if self.key_id is not None:
            records = records.filter(api_key_id=self.key_id)
        if self.model:
            records = records.filter(model=self.model)
        if self.endpoint:
            records = records.filter(endpoint=self.endpoint)
        if self.status == "ok":
            records = records.filter(status_code__lt=400).exclude(status_code=INTERRUPTED)
        elif self.status == "error":
            records = records.filter(FAILED)
        if self.request_id:
            records = records.filter(request_id__icontains=self.request_id)
        return records

    def querystring(self, **changes) -> str:
        """These filters as a query string (dates explicit), with some fields changed."""
        chosen = replace(self, **changes) if changes else self
        params = {"start": chosen.start.isoformat(), "end": chosen.end.isoformat()}
        if chosen.key_id is not None:
            params["key"] = str(chosen.key_id)
        for name in ("model", "endpoint", "status", "request_id"):
            if value := getattr(chosen, name):
                params[name] = value
        return urlencode(params)


@dataclass(frozen=True)
class Totals:
    requests: int
    errors: int
    cost: Decimal
    audio_seconds: float
    characters: int
    tokens: int


def totals(records: QuerySet[UsageRecord]) -> Totals:
    row = records.aggregate(
        requests=Count("id"),
        errors=Count("id", filter=FAILED),
        cost=Coalesce(Sum("cost"), Decimal(0)),
        audio_in=Coalesce(Sum("audio_seconds_in"), 0.0),
        audio_out=Coalesce(Sum("audio_seconds_out"), 0.0),
        characters=Coalesce(Sum("characters"), 0),
        tokens=Coalesce(
            Sum(
                F("text_tokens_in")
                + F("text_tokens_out")
                + F("audio_tokens_in")
                + F("audio_tokens_out")
            ),
            0,
        ),
    )
    return Totals(
        requests=row["requests"],
        errors=row["errors"],
        cost=row["cost"],
        audio_seconds=row["audio_in"] + row["audio_out"],
        characters=row["characters"],
        tokens=row["tokens"],
    )


class UTCDay(TruncDate):
    """The UTC day of a timestamp. Django computes TruncDate on SQLite with a Python function
    called per row (most of a 100,000-row page's time); SQLite stores UTC timestamps as ISO
    text, so its own date() gives the same day natively. Other databases keep TruncDate."""

    def as_sqlite(self, compiler, connection, **extra_context):
        sql, params = compiler.compile(self.lhs)
        return f"date({sql})", params


@dataclass
class DailySeries:
    """Per day and group (a key's name or a model): cost and request counts."""

    cost: dict[str, dict[date, float]] = field(default_factory=lambda: defaultdict(dict))
    requests: dict[str, dict[date, float]] = field(default_factory=lambda: defaultdict(dict))


def daily(records: QuerySet[UsageRecord], split: str) -> DailySeries:
    group = "api_key__name" if split == "key" else "model"
    rows = (
        records.annotate(day=UTCDay("created_at", tzinfo=UTC))
        .values("day", group)
        .annotate(cost=Sum("cost"), requests=Count("id"))
        .order_by("day", group)
    )
    series = DailySeries()
    for row in rows:
        series.cost[row[group]][row["day"]] = float(row["cost"] or 0)
        series.requests[row[group]][row["day"]] = row["requests"]
    return series
