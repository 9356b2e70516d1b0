"""Who may see which team: every team page resolves its team through here.

Someone who is not a member gets a 404, never a 403, so team ids reveal nothing.
"""

from django.contrib.auth.models import AbstractBaseUser
from django.http import Http404

from accounts.models import Membership


def membership_or_404(user: AbstractBaseUser, team_id: int) -> Membership:
    """The user's membership of the team, or 404 for anyone outside it."""
    if not user.is_authenticated:
        raise Http404
    membership = (
        Membership.objects.select_related("team").filter(team_id=team_id, user=user).first()
    )
    if membership is None:
        raise Http404
    return membership


def manager_membership_or_404(user: AbstractBaseUser, team_id: int) -> Membership:
    """As membership_or_404, for pages only owners and admins use (members get 404 too)."""
    membership = membership_or_404(user, team_id)
    if not membership.can_manage_keys:
        raise Http404
    return membership
