"""Usage and billing review for a team: totals, daily charts, the request table, one
request's detail, and the CSV export of exactly the rows the table shows."""

import csv
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from accounts.access import membership_or_404
from usage import charts, reports
from usage.models import UsageRecord

PAGE_SIZE = 50
CSV_BATCH = 2000
# (CSV header, field read from the database): rows come as tuples, not model instances,
# which makes an export of 100,000 rows several times faster.
CSV_COLUMNS = (
    ("time", "created_at"),
    ("request_id", "request_id"),
    ("key", "api_key__name"),
    ("model", "model"),
    ("endpoint", "endpoint"),
    ("status", "status_code"),
    ("provider", "provider"),
    ("attempts", "attempts"),
    ("audio_seconds_in", "audio_seconds_in"),
    ("audio_seconds_out", "audio_seconds_out"),
    ("characters", "characters"),
    ("text_tokens_in", "text_tokens_in"),
    ("text_tokens_out", "text_tokens_out"),
    ("audio_tokens_in", "audio_tokens_in"),
    ("audio_tokens_out", "audio_tokens_out"),
    ("cost_usd", "cost"),
    ("latency_ms", "latency_ms"),
)


def _filtered(request: HttpRequest, team_id: int):
    filters = reports.UsageFilters.from_query(request.GET, timezone.now().date())
    records = filters.apply(UsageRecord.objects.filter(team_id=team_id))
    return filters, records


@login_required
def team_usage(request: HttpRequest, team_id: int) -> HttpResponse:
    membership = membership_or_404(request.user, team_id)
    filters, records = _filtered(request, team_id)
    split = "model" if request.GET.get("split") == "model" else "key"
    series = reports.daily(records, split)
    by = "model" if split == "model" else "key"
    page = Paginator(
        records.select_related("api_key").order_by("-created_at", "-id"), PAGE_SIZE
    ).get_page(request.GET.get("page"))
    team_records = UsageRecord.objects.filter(team_id=team_id)
    context = {
        "team": membership.team,
        "membership": membership,
        "filters": filters,
        "periods": reports.PERIODS,
        "split": split,
        "totals": reports.totals(records),
        "cost_chart": charts.stacked_bars(
            f"Cost per day by {by}, USD", filters.days, series.cost, "${:,.4f}"
        ),
        "requests_chart": charts.stacked_bars(
            f"Requests per day by {by}", filters.days, series.requests, "{:,.4g}"
        ),
        "page": page,
        "keys": membership.team.api_keys.order_by("name"),
        "models": team_records.order_by("model").values_list("model", flat=True).distinct(),
        "endpoints": team_records.order_by("endpoint")
        .values_list("endpoint", flat=True)
        .distinct(),
        "querystring": filters.querystring(),
    }
    return render(request, "usage/usage.html", context)


@login_required
def record_detail(request: HttpRequest, team_id: int, record_id: int) -> HttpResponse:
    membership = membership_or_404(request.user, team_id)
    record = get_object_or_404(
        UsageRecord.objects.select_related("api_key"), pk=record_id, team_id=team_id
    )
    context = {"team": membership.team, "membership": membership, "record": record}
    return render(request, "usage/record.html", context)


class _Echo:
    """A file-like whose write returns the line, so csv.writer can feed a stream."""

    def write(self, value: str) -> str:
        return value


def _batch_after(records, last_id: int | None) -> list[tuple]:
    """The next rows, newest first, as (id, *CSV_COLUMNS values) with an ISO time."""
    page = records if last_id is None else records.filter(id__lt=last_id)
    fields = [field for _, field in CSV_COLUMNS]
    rows = page.order_by("-id").values_list("id", *fields)[:CSV_BATCH]
    return [(row[0], row[1].isoformat(), *row[2:]) for row in rows]


async def _csv_lines(records) -> AsyncIterator[str]:
    """The rows newest first, fetched in id-keyed batches: memory stays one batch deep
    however many rows match, and each batch is one indexed query."""
    writer = csv.writer(_Echo())
    yield writer.writerow([name for name, _ in CSV_COLUMNS])
    last_id = None
    while batch := await sync_to_async(_batch_after)(records, last_id):
        yield "".join(writer.writerow(row[1:]) for row in batch)
        last_id = batch[-1][0]


@login_required
def export_csv(request: HttpRequest, team_id: int) -> StreamingHttpResponse:
    membership = membership_or_404(request.user, team_id)
    filters, records = _filtered(request, team_id)
    filename = f"arouter-usage-{membership.team.pk}-{filters.start}-{filters.end}.csv"
    return StreamingHttpResponse(
        _csv_lines(records),
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
