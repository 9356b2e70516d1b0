"""Invitations: an owner or admin makes a link; whoever follows it, logged in, joins."""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.mail import send_mail
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from accounts.access import manager_membership_or_404
from accounts.models import Invitation, Membership
from dashboard.forms import InviteForm

VALID_FOR = timedelta(days=7)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@login_required
@require_POST
def invite(request: HttpRequest, team_id: int) -> HttpResponse:
    actor = manager_membership_or_404(request.user, team_id)
    form = InviteForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give an email address and a role.")
        return redirect("accounts:team", team_id=team_id)
    role = form.cleaned_data["role"]
    if role == Membership.Role.OWNER and actor.role != Membership.Role.OWNER:
        messages.error(request, "Only an owner can invite an owner.")
        return redirect("accounts:team", team_id=team_id)
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        team=actor.team,
        email=form.cleaned_data["email"],
        role=role,
        token_digest=token_digest(token),
        invited_by=request.user,
        expires_at=timezone.now() + VALID_FOR,
    )
    link = request.build_absolute_uri(reverse("accounts:invitation", args=[token]))
    send_mail(
        f"Join {actor.team.name} on ARouter",
        f"{request.user.get_username()} invited you to {actor.team.name} as {role}.\n\n"
        f"Accept within 7 days: {link}\n",
        settings.DEFAULT_FROM_EMAIL,
        [invitation.email],
    )
    context = {"team": actor.team, "membership": actor, "invitation": invitation, "link": link}
    return render(request, "dashboard/invitation_created.html", context)


def _open_invitation(token: str) -> Invitation:
    invitation = (
        Invitation.objects.select_related("team").filter(token_digest=token_digest(token)).first()
    )
    if invitation is None:
        raise Http404
    return invitation


@login_required
@require_http_methods(["GET", "POST"])
def accept(request: HttpRequest, token: str) -> HttpResponse:
    invitation = _open_invitation(token)
    problem = None
    if invitation.accepted_at is not None:
        problem = "This invitation has already been used."
    elif invitation.expires_at <= timezone.now():
        problem = "This invitation has expired. Ask for a new one."
    if problem or request.method == "GET":
        context = {"invitation": invitation, "problem": problem}
        return render(request, "dashboard/invitation.html", context, status=410 if problem else 200)
    with transaction.atomic():
        Membership.objects.get_or_create(
            team=invitation.team, user=request.user, defaults={"role": invitation.role}
        )
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = request.user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
    messages.success(request, f"Welcome to {invitation.team.name}.")
    return redirect("accounts:team", team_id=invitation.team_id)
