"""Home, teams, members and roles."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.access import manager_membership_or_404, membership_or_404
from accounts.auth import forget_cached_key
from accounts.models import Membership
from dashboard.forms import InviteForm, RoleForm, TeamBudgetForm, TeamForm

Role = Membership.Role


@login_required
def home(request: HttpRequest) -> HttpResponse:
    memberships = list(
        Membership.objects.filter(user=request.user).select_related("team").order_by("team__name")
    )
    if len(memberships) == 1 and request.method == "GET" and "teams" not in request.GET:
        return redirect("accounts:team", team_id=memberships[0].team_id)
    return render(
        request, "dashboard/home.html", {"memberships": memberships, "team_form": TeamForm()}
    )


@login_required
@require_POST
def create_team(request: HttpRequest) -> HttpResponse:
    form = TeamForm(request.POST)
    if not form.is_valid():
        memberships = Membership.objects.filter(user=request.user).select_related("team")
        context = {"memberships": memberships, "team_form": form}
        return render(request, "dashboard/home.html", context, status=400)
    with transaction.atomic():
        team = form.save()
        Membership.objects.create(team=team, user=request.user, role=Role.OWNER)
    messages.success(request, f"Team {team.name} created.")
    return redirect("accounts:team", team_id=team.pk)


@login_required
def team(request: HttpRequest, team_id: int) -> HttpResponse:
    membership = membership_or_404(request.user, team_id)
    members = membership.team.memberships.select_related("user").order_by("created_at")
    context = {
        "team": membership.team,
        "membership": membership,
        "members": members,
        "roles": Role.choices,
        "invite_form": InviteForm(),
        "budget_form": TeamBudgetForm(instance=membership.team),
        "now": timezone.now(),
        "invitations": membership.team.invitations.filter(accepted_at__isnull=True).order_by(
            "-created_at"
        )
        if membership.can_manage_keys
        else [],
    }
    return render(request, "dashboard/team.html", context)


def _owners(team_id: int) -> int:
    return Membership.objects.filter(team_id=team_id, role=Role.OWNER).count()


@login_required
@require_POST
def change_role(request: HttpRequest, team_id: int, member_id: int) -> HttpResponse:
    actor = manager_membership_or_404(request.user, team_id)
    target = get_object_or_404(Membership, pk=member_id, team_id=team_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a valid role.")
        return redirect("accounts:team", team_id=team_id)
    new_role = form.cleaned_data["role"]
    touches_owner = Role.OWNER in (new_role, target.role)
    if touches_owner and actor.role != Role.OWNER:
        messages.error(request, "Only an owner can make or unmake owners.")
    elif target.role == Role.OWNER and new_role != Role.OWNER and _owners(team_id) == 1:
        messages.error(request, "A team needs an owner: make someone else owner first.")
    else:
        target.role = new_role
        target.save(update_fields=["role"])
        messages.success(
            request, f"{target.user.get_username()} is now {target.get_role_display()}."
        )
    return redirect("accounts:team", team_id=team_id)


@login_required
@require_POST
def remove_member(request: HttpRequest, team_id: int, member_id: int) -> HttpResponse:
    actor = manager_membership_or_404(request.user, team_id)
    target = get_object_or_404(Membership, pk=member_id, team_id=team_id)
    if target.role == Role.OWNER and actor.role != Role.OWNER:
        messages.error(request, "Only an owner can remove an owner.")
    elif target.role == Role.OWNER and _owners(team_id) == 1:
        messages.error(request, "A team needs an owner: make someone else owner first.")
    else:
        target.delete()
        messages.success(request, f"{target.user.get_username()} was removed from the team.")
    return redirect("accounts:team", team_id=team_id)


@login_required
@require_POST
def leave_team(request: HttpRequest, team_id: int) -> HttpResponse:
    membership = membership_or_404(request.user, team_id)
    if membership.role == Role.OWNER and _owners(team_id) == 1:
        messages.error(request, "You are the last owner: make someone else owner first.")
        return redirect("accounts:team", team_id=team_id)
    membership.delete()
    messages.success(request, f"You left {membership.team.name}.")
    return redirect("accounts:home")


@login_required
@require_POST
def set_budget(request: HttpRequest, team_id: int) -> HttpResponse:
    """Owners set the team's monthly budget (admins manage keys, not the team's money)."""
    membership = membership_or_404(request.user, team_id)
    if membership.role != Role.OWNER:
        raise Http404
    form = TeamBudgetForm(request.POST, instance=membership.team)
    if form.is_valid():
        form.save()
        # Keys carry their team in the authentication cache: refresh them in this worker.
        for api_key in membership.team.api_keys.all():
            forget_cached_key(api_key)
        messages.success(request, "Team budget saved.")
    else:
        messages.error(request, "Enter a budget of zero or more dollars, or leave it empty.")
    return redirect("accounts:team", team_id=team_id)
