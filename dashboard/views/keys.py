"""API keys of a team: list with this month's spend, create (shown once), edit, revoke."""

import secrets
from decimal import Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import DecimalField, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods

from accounts.access import manager_membership_or_404, membership_or_404
from accounts.models import ApiKey, Membership
from dashboard.forms import KeyForm
from usage.models import billing_month_start

# Ids of create-key forms already sent (not secrets): the form posted again, as a reload
# of the page showing a new key does, creates no second key.
SENT_FORMS_SESSION = "arouter.sent_key_forms"
SENT_FORMS_KEPT = 20


def keys_with_spend(team_id: int):
    """The team's keys, newest first, each with `month_spend`: one aggregate query."""
    this_month = Q(usage_records__created_at__gte=billing_month_start())
    zero = Value(Decimal(0), output_field=DecimalField(max_digits=16, decimal_places=8))
    return (
        ApiKey.objects.filter(team_id=team_id)
        .annotate(month_spend=Coalesce(Sum("usage_records__cost", filter=this_month), zero))
        .order_by("-created_at")
    )


def _page(
    request: HttpRequest, membership: Membership, form: KeyForm, status: int = 200, **extra
) -> HttpResponse:
    context = {
        "team": membership.team,
        "membership": membership,
        "keys": keys_with_spend(membership.team_id),
        "form": form,
        "now": timezone.now(),
        "form_id": secrets.token_urlsafe(12),
        **extra,
    }
    return render(request, "dashboard/keys.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def keys(request: HttpRequest, team_id: int) -> HttpResponse:
    """Everyone in the team sees the keys (to pick one in the playground); managers create."""
    membership = membership_or_404(request.user, team_id)
    if request.method == "GET":
        return _page(request, membership, KeyForm())
    membership = manager_membership_or_404(request.user, team_id)
    form_id = request.POST.get("form_id", "")[:32]
    sent = request.session.get(SENT_FORMS_SESSION, [])
    if form_id and form_id in sent:
        messages.info(request, "That form was sent already: its key exists, shown only once.")
        return redirect("accounts:keys", team_id=team_id)
    form = KeyForm(request.POST)
    if not form.is_valid():
        return _page(request, membership, form, status=400)
    issued = ApiKey.issue(membership.team, created_by=request.user, **form.cleaned_data)
    if form_id:
        request.session[SENT_FORMS_SESSION] = [*sent, form_id][-SENT_FORMS_KEPT:]
    # The secret is in this response only: never in the session (whose data is signed, not
    # encrypted) nor a cookie, and not cached. A reload posts the same form id again, which
    # creates nothing (above); any later page shows no secret.
    response = _page(
        request, membership, KeyForm(), new_key=issued.raw, new_key_name=issued.api_key.name
    )
    add_never_cache_headers(response)
    return response


@login_required
@require_http_methods(["GET", "POST"])
def edit_key(request: HttpRequest, team_id: int, key_id: int) -> HttpResponse:
    membership = manager_membership_or_404(request.user, team_id)
    api_key = get_object_or_404(ApiKey, pk=key_id, team_id=team_id)
    form = KeyForm(request.POST or None, instance=api_key)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Key {api_key.name} saved.")
        return redirect("accounts:keys", team_id=team_id)
    context = {"team": membership.team, "membership": membership, "key": api_key, "form": form}
    return render(request, "dashboard/key_edit.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def revoke_key(request: HttpRequest, team_id: int, key_id: int) -> HttpResponse:
    """GET asks for confirmation; POST revokes."""
    membership = manager_membership_or_404(request.user, team_id)
    api_key = get_object_or_404(ApiKey, pk=key_id, team_id=team_id)
    if request.method == "POST":
        api_key.revoke()
        messages.success(request, f"Key {api_key.name} ({api_key.masked}) is revoked.")
        return redirect("accounts:keys", team_id=team_id)
    context = {"team": membership.team, "membership": membership, "key": api_key}
    return render(request, "dashboard/key_revoke.html", context)
