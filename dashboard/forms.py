"""Forms of the dashboard pages: sign-up and log-in, teams, invitations, keys."""

from datetime import UTC, datetime, time

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.contrib.auth.models import User
from django.utils import timezone

from accounts.models import ApiKey, Membership, Team
from dashboard import throttle
from gateway.catalog import catalog


class SignupForm(UserCreationForm):
    email = forms.EmailField(required=True, help_text="Invitations are sent here.")

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


class ThrottledLoginMixin:
    """Log-in forms that refuse to check a password while its username and address are
    paused, and count each failed check; the site's and the admin's share the counters."""

    def clean(self) -> dict:
        username = self.data.get("username", "")
        address = throttle.client_address(self.request)
        if throttle.is_locked(username, address):
            raise forms.ValidationError(throttle.LOCKED_MESSAGE, code=throttle.LOCKED)
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            throttle.record_failure(username, address)
            raise
        if self.get_user() is not None:
            throttle.clear(username, address)
        return cleaned


class ThrottledAuthenticationForm(ThrottledLoginMixin, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(ThrottledLoginMixin, AdminAuthenticationForm):
    pass


class TeamForm(forms.ModelForm):
    class Meta:
        model = Team
        fields = ("name",)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if Team.objects.filter(name__iexact=name).exists():
            raise forms.ValidationError("A team with this name already exists.")
        return name


class TeamBudgetForm(forms.ModelForm):
    class Meta:
        model = Team
        fields = ("monthly_budget_usd",)
        labels = {"monthly_budget_usd": "Monthly budget for all keys (USD)"}
        help_texts = {"monthly_budget_usd": "Empty for no limit."}


class InviteForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)


# The /v1 endpoints a key can be limited to, as the usage ledger names them.
ENDPOINTS = (
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/v1/audio/speech",
    "/v1/chat/completions",
    "/v1/realtime",
)


def _model_choices() -> list[tuple[str, str]]:
    return [(model_id, model_id) for model_id in sorted(catalog().models)]


class KeyForm(forms.ModelForm):
    """A key's name and limits; the expiry is a day, the key works until the end of it."""

    expires_at = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Optional; the key stops working at the end of this day (UTC).",
    )
    allowed_models = forms.MultipleChoiceField(
        required=False,
        choices=_model_choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every model.",
    )
    allowed_endpoints = forms.MultipleChoiceField(
        required=False,
        choices=[(endpoint, endpoint) for endpoint in ENDPOINTS],
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every endpoint.",
    )

    class Meta:
        model = ApiKey
        fields = (
            "name",
            "expires_at",
            "requests_per_minute",
            "max_concurrent_requests",
            "monthly_budget_usd",
            "allowed_models",
            "allowed_endpoints",
        )
        labels = {
            "requests_per_minute": "Requests per minute",
            "max_concurrent_requests": "Concurrent requests",
            "monthly_budget_usd": "Monthly budget (USD)",
            "allowed_models": "Only these models",
            "allowed_endpoints": "Only these endpoints",
        }
        help_texts = {
            "requests_per_minute": "Empty for no limit.",
            "max_concurrent_requests": "Empty for no limit.",
            "monthly_budget_usd": "Empty for no limit.",
        }

    def __init__(self, *args, **kwargs) -> None:
        instance = kwargs.get("instance")
        if instance is not None and instance.expires_at is not None:
            kwargs.setdefault("initial", {})["expires_at"] = instance.expires_at.date()
        super().__init__(*args, **kwargs)

    def clean_expires_at(self) -> datetime | None:
        day = self.cleaned_data["expires_at"]
        if day is None:
            return None
        if day < timezone.now().date():
            raise forms.ValidationError("Choose today or a later day.")
        return datetime.combine(day, time.max, tzinfo=UTC)
