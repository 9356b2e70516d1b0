from django.urls import path

from dashboard.views import auth, invitations, keys, teams

# The namespace keeps its first name: every page and template reverses "accounts:…".
app_name = "accounts"

urlpatterns = [
    path("", teams.home, name="home"),
    path("signup/", auth.signup, name="signup"),
    path("teams/new/", teams.create_team, name="create_team"),
    path("teams/<int:team_id>/", teams.team, name="team"),
    path("teams/<int:team_id>/leave/", teams.leave_team, name="leave_team"),
    path("teams/<int:team_id>/budget/", teams.set_budget, name="set_budget"),
    path(
        "teams/<int:team_id>/members/<int:member_id>/role/", teams.change_role, name="change_role"
    ),
    path(
        "teams/<int:team_id>/members/<int:member_id>/remove/",
        teams.remove_member,
        name="remove_member",
    ),
    path("teams/<int:team_id>/invitations/", invitations.invite, name="invite"),
    path("invitations/<str:token>/", invitations.accept, name="invitation"),
    path("teams/<int:team_id>/keys/", keys.keys, name="keys"),
    path("teams/<int:team_id>/keys/<int:key_id>/", keys.edit_key, name="edit_key"),
    path("teams/<int:team_id>/keys/<int:key_id>/revoke/", keys.revoke_key, name="revoke_key"),
]
