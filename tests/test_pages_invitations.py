"""Invitations: made by managers, shown once, mailed, accepted once, expiring."""

import re
from datetime import timedelta

from django.contrib.auth.models import User
from django.core import mail
from django.utils import timezone

from accounts.models import Invitation, Membership
from tests.pages import logged_in


def invite(client, team, email="new@example.com", role="member"):
    return client.post(f"/teams/{team.pk}/invitations/", {"email": email, "role": role})


def link_in(response) -> str:
    return re.search(r'id="invitation-link">([^<]+)<', response.content.decode()).group(1)


def test_an_invitation_link_is_shown_once_and_mailed(as_owner, team):
    response = invite(as_owner, team)
    link = link_in(response)

    assert response.status_code == 200
    assert link.startswith("http://testserver/invitations/")
    assert len(mail.outbox) == 1
    assert link in mail.outbox[0].body
    assert mail.outbox[0].to == ["new@example.com"]
    # Only a digest is stored.
    token = link.rstrip("/").rsplit("/", 1)[1]
    assert token not in Invitation.objects.get().token_digest


def test_following_the_link_joins_the_team_with_the_role(as_owner, team):
    path = link_in(invite(as_owner, team, role="admin")).removeprefix("http://testserver")
    newcomer = User.objects.create_user("newcomer", "new@example.com", "newcomer-password-1")
    client = logged_in(newcomer)

    assert b"Join acme" in client.get(path).content
    response = client.post(path)

    assert response.url == f"/teams/{team.pk}/"
    assert Membership.objects.get(user=newcomer, team=team).role == "admin"
    # Used once.
    assert client.get(path).status_code == 410
    other = logged_in(User.objects.create_user("late", "late@example.com", "late-password-1"))
    assert other.post(path).status_code == 410
    assert not Membership.objects.filter(user__username="late").exists()


def test_expired_and_unknown_invitations(as_owner, team, outsider):
    path = link_in(invite(as_owner, team)).removeprefix("http://testserver")
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    client = logged_in(outsider)

    response = client.post(path)
    assert response.status_code == 410
    assert b"expired" in response.content
    assert not Membership.objects.filter(user=outsider, team=team).exists()
    assert client.get("/invitations/not-a-token/").status_code == 404


def test_accepting_needs_a_log_in(as_owner, team):
    from django.test import Client

    path = link_in(invite(as_owner, team)).removeprefix("http://testserver")
    response = Client().get(path)
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/?next=/invitations/")


def test_members_and_outsiders_cannot_invite(as_member, as_outsider, team):
    assert invite(as_member, team).status_code == 404
    assert invite(as_outsider, team).status_code == 404
    assert Invitation.objects.count() == 0


def test_admins_cannot_invite_owners(team, member):
    Membership.objects.filter(user=member).update(role="admin")
    invite(logged_in(member), team, role="owner")
    assert Invitation.objects.count() == 0
