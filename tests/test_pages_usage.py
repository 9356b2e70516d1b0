"""Usage review: totals, daily charts, the filtered table, request detail, CSV export."""

import csv
import io
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ApiKey
from tests.streaming import body_of
from usage.models import UsageRecord

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def ledger(team, api_key):
    """Two keys, two models, two days, one failure; returns the day before today."""
    other = ApiKey.issue(team, name="other").api_key
    today = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(days=1)
    rows = [
        (api_key.api_key, "local/whisper-base", "/v1/audio/transcriptions", 200, "0.10", yesterday),
        (api_key.api_key, "local/piper", "/v1/audio/speech", 200, "0.20", yesterday),
        (other, "local/piper", "/v1/audio/speech", 200, "0.40", today),
        (other, "local/piper", "/v1/audio/speech", 400, "0", today),
    ]
    for n, (key, model, endpoint, status, cost, when) in enumerate(rows):
        UsageRecord.objects.create(
            api_key=key, team=team, model=model, endpoint=endpoint, status_code=status,
            request_id=f"req_{n}", cost=Decimal(cost), created_at=when, characters=10 * n,
            audio_seconds_in=1.5,
        )  # fmt: skip
    return yesterday.date()


def period(start) -> str:
    return f"start={start.isoformat()}&end={timezone.now().date().isoformat()}"


def csv_rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(body_of(response).decode())))


@pytest.mark.parametrize(
    ("who", "status"), [("as_owner", 200), ("as_member", 200), ("as_outsider", 404)]
)
def test_usage_pages_are_for_team_members(request, team, member, ledger, who, status):
    client = request.getfixturevalue(who)
    record = UsageRecord.objects.first()
    assert client.get(f"/teams/{team.pk}/usage/").status_code == status
    assert client.get(f"/teams/{team.pk}/usage/export.csv").status_code == status
    assert client.get(f"/teams/{team.pk}/usage/{record.pk}/").status_code == status


def test_anonymous_visitors_are_sent_to_log_in(team):
    assert Client().get(f"/teams/{team.pk}/usage/").status_code == 302
    assert Client().get(f"/teams/{team.pk}/usage/export.csv").status_code == 302


def test_totals_for_the_period(as_owner, team, ledger):
    totals = as_owner.get(f"/teams/{team.pk}/usage/?{period(ledger)}").context["totals"]
    assert totals.requests == 4
    assert totals.errors == 1
    assert totals.cost == Decimal("0.70")
    assert totals.characters == 60
    assert totals.audio_seconds == pytest.approx(6.0)


def test_daily_charts_split_by_key_and_by_model(as_owner, team, ledger):
    url = f"/teams/{team.pk}/usage/?{period(ledger)}"
    by_key = as_owner.get(url).context
    chart = ET.fromstring(str(by_key["cost_chart"]))
    days = chart.findall(f"{SVG}g")
    assert [g.get("data-day") for g in days] == [
        ledger.isoformat(),
        (ledger + timedelta(days=1)).isoformat(),
    ]
    bar_titles = [
        rect.find(f"{SVG}title").text
        for rect in chart.iter(f"{SVG}rect")
        if rect.find(f"{SVG}title") is not None
    ]
    assert f"test, {ledger.isoformat()}: $0.3000" in bar_titles
    assert any(t.startswith("other,") and t.endswith("$0.4000") for t in bar_titles)

    by_model = ET.fromstring(str(as_owner.get(url + "&split=model").context["requests_chart"]))
    titles = {
        rect.find(f"{SVG}title").text
        for rect in by_model.iter(f"{SVG}rect")
        if rect.find(f"{SVG}title") is not None
    }
    today = (ledger + timedelta(days=1)).isoformat()
    assert f"local/piper, {today}: 2" in titles
    assert f"local/whisper-base, {ledger.isoformat()}: 1" in titles


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"req_0", "req_1", "req_2", "req_3"}),
        ("&model=local/piper", {"req_1", "req_2", "req_3"}),
        ("&endpoint=/v1/audio/transcriptions", {"req_0"}),
        ("&status=error", {"req_3"}),
        ("&status=ok&model=local/piper", {"req_1", "req_2"}),
        ("&request_id=req_2", {"req_2"}),
    ],
)
def test_filters_narrow_the_table_and_the_csv_alike(as_owner, team, ledger, query, expected):
    url = f"/teams/{team.pk}/usage/?{period(ledger)}{query}"
    table = {record.request_id for record in as_owner.get(url).context["page"]}
    exported = csv_rows(as_owner.get(f"/teams/{team.pk}/usage/export.csv?{period(ledger)}{query}"))
    assert table == expected
    assert {row["request_id"] for row in exported} == expected


def test_key_filter_and_csv_columns(as_owner, team, ledger, api_key):
    query = f"{period(ledger)}&key={api_key.api_key.pk}"
    response = as_owner.get(f"/teams/{team.pk}/usage/export.csv?{query}")
    rows = csv_rows(response)
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    assert {row["key"] for row in rows} == {"test"}
    assert sum(Decimal(row["cost_usd"]) for row in rows) == Decimal("0.30")
    assert set(rows[0]) >= {"time", "model", "endpoint", "status", "latency_ms", "characters"}


def test_the_period_excludes_other_days(as_owner, team, ledger):
    today = timezone.now().date().isoformat()
    page = as_owner.get(f"/teams/{team.pk}/usage/?start={today}&end={today}").context["page"]
    assert {record.request_id for record in page} == {"req_2", "req_3"}


def test_pagination(as_owner, team, api_key):
    now = timezone.now()
    UsageRecord.objects.bulk_create(
        UsageRecord(api_key=api_key.api_key, team=team, model="m", endpoint="e", status_code=200,
                    request_id=f"r{n}", created_at=now - timedelta(seconds=n))
        for n in range(120)
    )  # fmt: skip
    first = as_owner.get(f"/teams/{team.pk}/usage/").context["page"]
    last = as_owner.get(f"/teams/{team.pk}/usage/?page=3").context["page"]
    assert first.paginator.num_pages == 3
    assert [r.request_id for r in first][:2] == ["r0", "r1"]
    assert len(last.object_list) == 20
    assert len(csv_rows(as_owner.get(f"/teams/{team.pk}/usage/export.csv"))) == 120


def test_record_detail_shows_the_request_and_stays_in_its_team(
    as_owner, as_outsider, team, ledger, outsider_key
):
    record = UsageRecord.objects.get(request_id="req_2")
    page = as_owner.get(f"/teams/{team.pk}/usage/{record.pk}/").content.decode()
    assert "req_2" in page
    assert "Attempts" in page

    foreign = UsageRecord.objects.create(
        api_key=outsider_key.api_key, team=outsider_key.api_key.team, model="m", endpoint="e",
        status_code=200, request_id="secret",
    )  # fmt: skip
    assert as_owner.get(f"/teams/{team.pk}/usage/{foreign.pk}/").status_code == 404
    assert as_outsider.get(f"/teams/{team.pk}/usage/{record.pk}/").status_code == 404
    own_team = outsider_key.api_key.team_id
    assert as_outsider.get(f"/teams/{own_team}/usage/{record.pk}/").status_code == 404


def test_a_start_after_the_end_is_explained(as_owner, team):
    response = as_owner.get(f"/teams/{team.pk}/usage/?start=2026-05-10&end=2026-05-01")
    assert "The start date is after the end date" in response.content.decode()
    filters = response.context["filters"]
    assert filters.start == filters.end == datetime(2026, 5, 1, tzinfo=UTC).date()


def test_an_end_past_today_shows_up_to_today(as_owner, team, ledger):
    today = timezone.now().date()
    query = f"start={ledger.isoformat()}&end=9999-12-31"

    response = as_owner.get(f"/teams/{team.pk}/usage/?{query}")
    exported = as_owner.get(f"/teams/{team.pk}/usage/export.csv?{query}")

    assert response.status_code == 200
    filters = response.context["filters"]
    assert (filters.start, filters.end) == (ledger, today)
    assert "There is no usage after today" in response.content.decode()
    assert {record.request_id for record in response.context["page"]} == {
        "req_0", "req_1", "req_2", "req_3"
    }  # fmt: skip
    assert exported.status_code == 200
    assert f"-{today.isoformat()}.csv" in exported["Content-Disposition"]
    assert len(csv_rows(exported)) == 4


def test_a_period_is_at_most_400_days(as_owner, team, ledger):
    today = timezone.now().date()
    query = "start=1026-12-01&end=" + today.isoformat()

    response = as_owner.get(f"/teams/{team.pk}/usage/?{query}")
    exported = as_owner.get(f"/teams/{team.pk}/usage/export.csv?{query}")

    filters = response.context["filters"]
    assert filters.start == today - timedelta(days=399)
    assert len(filters.days) == 400
    assert "A period is at most 400 days" in response.content.decode()
    chart = ET.fromstring(str(response.context["cost_chart"]))
    assert len(chart.findall(f"{SVG}g")) == 400  # a bar slot per day, no more
    expected = f"-{filters.start.isoformat()}-{today.isoformat()}.csv"
    assert expected in exported["Content-Disposition"]
    assert len(csv_rows(exported)) == 4


@pytest.mark.parametrize(
    "query",
    [
        "start=not-a-date&end=2026-13-40",
        "start=0001-01-01&end=0001-01-01",
        "end=0001-01-01",
        "start=9999-12-31",
        "key=%C2%B2",  # '²', a digit int() refuses
        "key=99999999999999999999999999",
        "page=%C2%B2&split=model",
    ],
)
def test_odd_filters_are_a_page_not_a_500(as_owner, team, ledger, query):
    assert as_owner.get(f"/teams/{team.pk}/usage/?{query}").status_code == 200
    assert as_owner.get(f"/teams/{team.pk}/usage/export.csv?{query}").status_code == 200


def test_a_date_that_is_not_one_is_explained(as_owner, team, ledger):
    response = as_owner.get(f"/teams/{team.pk}/usage/?start=2026-02-30&end=yesterday")
    page = response.content.decode()
    assert "The start date “2026-02-30” is not a date (YYYY-MM-DD)" in page
    assert "The end date “yesterday” is not a date" in page
    filters = response.context["filters"]
    today = timezone.now().date()
    assert (filters.start, filters.end) == (today.replace(day=1), today)
