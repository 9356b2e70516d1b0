"""Sign-up, and log-in with throttling of failed attempts."""

from django.contrib import admin
from django.contrib.auth import login
from django.contrib.auth.views import LoginView
from django.db import transaction
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.models import Membership, Team
from dashboard import throttle
from dashboard.forms import SignupForm, ThrottledAuthenticationForm


def _paused_is_429(response: HttpResponse) -> HttpResponse:
    """A log-in form refused because its username and address are paused answers 429."""
    form = (getattr(response, "context_data", None) or {}).get("form")
    if isinstance(form, Form) and form.has_error("__all__", code=throttle.LOCKED):
        response.status_code = 429
    return response


class ThrottledLoginView(LoginView):
    """Django's log-in; after too many failures for a username from one address, a pause
    (counted by the form, ThrottledAuthenticationForm)."""

    authentication_form = ThrottledAuthenticationForm

    def form_invalid(self, form) -> HttpResponse:
        return _paused_is_429(super().form_invalid(form))


def admin_login(request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
    """The admin's own log-in page; its form (admin.site.login_form, set in arouter.urls)
    is throttled with the same counters as the site's log-in."""
    return _paused_is_429(admin.site.login(request, extra_context))


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
    return render(request, "dashboard/signup.html", {"form": form})
