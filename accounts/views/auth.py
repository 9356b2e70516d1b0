"""Sign-up, and log-in with throttling of failed attempts."""

from django.contrib.auth import login
from django.contrib.auth.views import LoginView
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts import throttle
from accounts.forms import SignupForm
from accounts.models import Membership, Team


def _client_address(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "")


class ThrottledLoginView(LoginView):
    """Django's log-in; after too many failures for a username from one address, a pause."""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        username = request.POST.get("username", "")
        if throttle.is_locked(username, _client_address(request)):
            form = self.get_form()
            form.errors.clear()
            form.add_error(
                None,
                "Too many failed log-in attempts. Wait 15 minutes, then try again.",
            )
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form) -> HttpResponse:
        throttle.record_failure(
            self.request.POST.get("username", ""), _client_address(self.request)
        )
        return super().form_invalid(form)

    def form_valid(self, form) -> HttpResponse:
        throttle.clear(form.get_user().get_username(), _client_address(self.request))
        return super().form_valid(form)


def _personal_team_name(username: str) -> str:
    name = f"{username}'s team"
    suffix = 2
    while Team.objects.filter(name__iexact=name).exists():
        name = f"{username}'s team {suffix}"
        suffix += 1
    return name


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """A new account comes with a team of its own, so the playground works at once."""
    if request.user.is_authenticated:
        return redirect("accounts:home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            user = form.save()
            team = Team.objects.create(name=_personal_team_name(user.username))
            Membership.objects.create(team=team, user=user, role=Membership.Role.OWNER)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("accounts:team", team_id=team.pk)
    return render(request, "accounts/signup.html", {"form": form})
