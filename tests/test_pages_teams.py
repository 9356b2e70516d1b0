"""Team page, roles, removing members, leaving; who may do what."""

import pytest
from django.test import Client

from accounts.models import Membership
from tests.pages import logged_in

Role = Membership.Role


def membership(user, team) -> Membership:
    return Membership.objects.get(user=user, team=team)


@pytest.mark.parametrize(
    ("who", "status"), [("as_owner", 200), ("as_member", 200), ("as_outsider", 404)]
)
def test_team_page_is_for_members_only(request, team, member, who, status):
    response = request.getfixturevalue(who).get(f"/teams/{team.pk}/")
    assert response.status_code == status


def test_team_page_needs_a_log_in(team):
    response = Client().get(f"/teams/{team.pk}/")
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


def test_team_page_lists_members_and_shows_manage_controls_to_owners(
    as_owner, as_member, team, member
):
    owner_view = as_owner.get(f"/teams/{team.pk}/").content.decode()
    member_view = as_member.get(f"/teams/{team.pk}/").content.decode()
    assert "member@example.com" in owner_view
    assert "Create invitation" in owner_view
    assert "Create invitation" not in member_view
    assert "Remove" not in member_view


def test_owner_changes_a_role(as_owner, team, member):
    target = membership(member, team)
    as_owner.post(f"/teams/{team.pk}/members/{target.pk}/role/", {"role": "admin"})
    target.refresh_from_db()
    assert target.role == Role.ADMIN


def test_members_cannot_change_roles(as_member, team, owner, member):
    target = membership(owner, team)
    response = as_member.post(f"/teams/{team.pk}/members/{target.pk}/role/", {"role": "member"})
    assert response.status_code == 404
    target.refresh_from_db()
    assert target.role == Role.OWNER


def test_admins_cannot_make_owners(team, member):
    admin = membership(member, team)
    admin.role = Role.ADMIN
    admin.save()
    from django.contrib.auth.models import User

    third = User.objects.create_user("third", "third@example.com", "third-password-1")
    target = Membership.objects.create(team=team, user=third)
    logged_in(member).post(f"/teams/{team.pk}/members/{target.pk}/role/", {"role": "owner"})
    target.refresh_from_db()
    assert target.role == Role.MEMBER


def test_the_last_owner_cannot_be_demoted_or_leave(as_owner, owner, team, member):
    own = membership(owner, team)
    other_owner_id = membership(member, team).pk
    as_owner.post(f"/teams/{team.pk}/members/{own.pk}/role/", {"role": "member"})
    as_owner.post(f"/teams/{team.pk}/leave/")
    own.refresh_from_db()
    assert own.role == Role.OWNER

    # With a second owner, leaving works.
    as_owner.post(f"/teams/{team.pk}/members/{other_owner_id}/role/", {"role": "owner"})
    response = as_owner.post(f"/teams/{team.pk}/leave/")
    assert response.url == "/"
    assert not Membership.objects.filter(pk=own.pk).exists()


def test_owner_removes_a_member_who_then_sees_nothing(as_owner, team, member):
    target = membership(member, team)
    as_owner.post(f"/teams/{team.pk}/members/{target.pk}/remove/")
    assert not Membership.objects.filter(pk=target.pk).exists()
    assert logged_in(member).get(f"/teams/{team.pk}/").status_code == 404


def test_outsiders_cannot_touch_memberships_of_other_teams(as_outsider, team, member):
    target = membership(member, team)
    for action in ("role", "remove"):
        response = as_outsider.post(
            f"/teams/{team.pk}/members/{target.pk}/{action}/", {"role": "owner"}
        )
        assert response.status_code == 404
    assert as_outsider.post(f"/teams/{team.pk}/leave/").status_code == 404
    target.refresh_from_db()
    assert target.role == Role.MEMBER


def test_a_membership_id_from_another_team_is_404(as_owner, team, outsider):
    foreign = Membership.objects.get(user=outsider)
    response = as_owner.post(f"/teams/{team.pk}/members/{foreign.pk}/remove/")
    assert response.status_code == 404
    assert Membership.objects.filter(pk=foreign.pk).exists()


def test_owners_set_the_team_budget_and_the_api_enforces_it(as_owner, as_member, team, api_key):
    assert (
        as_member.post(f"/teams/{team.pk}/budget/", {"monthly_budget_usd": "0"}).status_code == 404
    )
    team.refresh_from_db()
    assert team.monthly_budget_usd is None

    as_owner.post(f"/teams/{team.pk}/budget/", {"monthly_budget_usd": "0.00"})

    team.refresh_from_db()
    assert team.monthly_budget_usd == 0
    api = Client(headers={"Authorization": f"Bearer {api_key.raw}"})
    response = api.post(
        "/v1/audio/speech",
        {"model": "local/piper", "voice": "alloy", "input": "Hi."},
        content_type="application/json",
    )
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "insufficient_quota"
