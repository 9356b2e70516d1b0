"""Teams, their members, and the API keys that authenticate /v1 requests."""

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import models, transaction
from django.dispatch import Signal
from django.utils import timezone

KEY_PREFIX = "lr_live_"
# Characters of the key (after KEY_PREFIX) kept in clear to find the row to verify.
LOOKUP_LENGTH = 12


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Spend cap for all of the team's keys together, per calendar month (UTC); null = none.
    monthly_budget_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="teams"
    )

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        MEMBER = "member"

    team = models.ForeignKey(Team, models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint("team", "user", name="one_membership_per_team")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"

    @property
    def can_manage_keys(self) -> bool:
        return self.role in {self.Role.OWNER, self.Role.ADMIN}


def key_digest(raw_key: str) -> str:
    return hmac.new(
        settings.AROUTER_KEY_PEPPER.encode(), raw_key.encode(), hashlib.sha256
    ).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    """A newly created key with its only copy of the secret."""

    api_key: "ApiKey"
    raw: str


# Sent (with `key_id`) once a key's revocation is committed: whatever holds the key open
# (realtime sockets, in any worker) listens and lets go.
key_revoked = Signal()


class ApiKeyQuerySet(models.QuerySet):
    def usable(self) -> "ApiKeyQuerySet":
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).exclude(expires_at__lte=now)


class ApiKey(models.Model):
    team = models.ForeignKey(Team, models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, default="default")
    lookup = models.CharField(max_length=LOOKUP_LENGTH, unique=True)
    digest = models.CharField(max_length=64)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Limits, enforced before a provider is called; null (or an empty list) means no limit.
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    max_concurrent_requests = models.PositiveIntegerField(null=True, blank=True)
    monthly_budget_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    # Catalog model ids this key may use, and /v1 endpoints (e.g. "audio/speech") it may call.
    allowed_models = models.JSONField(default=list, blank=True)
    allowed_endpoints = models.JSONField(default=list, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.team}/{self.name} ({self.masked})"

    @classmethod
    def issue(cls, team: Team, name: str = "default", **fields) -> IssuedKey:
        """Create a key. The raw secret is returned here and never stored or shown again."""
        raw = KEY_PREFIX + secrets.token_urlsafe(32)
        api_key = cls.objects.create(
            team=team,
            name=name,
            lookup=raw[len(KEY_PREFIX) : len(KEY_PREFIX) + LOOKUP_LENGTH],
            digest=key_digest(raw),
            **fields,
        )
        return IssuedKey(api_key, raw)

    @classmethod
    def lookup_of(cls, raw: str) -> str | None:
        """The indexed lookup part of a raw key, or None when it cannot be one of ours."""
        if not raw.startswith(KEY_PREFIX) or len(raw) < len(KEY_PREFIX) + LOOKUP_LENGTH + 8:
            return None
        return raw[len(KEY_PREFIX) : len(KEY_PREFIX) + LOOKUP_LENGTH]

    def matches(self, raw: str) -> bool:
        return hmac.compare_digest(self.digest, key_digest(raw))

    @property
    def masked(self) -> str:
        return f"{KEY_PREFIX}{self.lookup[:4]}…"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now=None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])
            transaction.on_commit(
                functools.partial(key_revoked.send, sender=ApiKey, key_id=self.pk)
            )

    def last_used_is_stale(self, now) -> bool:
        window = timedelta(seconds=settings.AROUTER_LAST_USED_RESOLUTION)
        return self.last_used_at is None or now - self.last_used_at >= window


class Invitation(models.Model):
    """An invitation to join a team, accepted by following a link that carries the token."""

    team = models.ForeignKey(Team, models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Membership.Role.choices, default="member")
    # Only the digest is stored: the link is shown once to the inviter (and emailed).
    token_digest = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.email} to {self.team} ({self.role})"
