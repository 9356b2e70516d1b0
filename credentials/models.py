"""Per-team API keys for upstream providers, encrypted at rest.

A team may bring its own key for an upstream (`[upstreams.NAME]` in the catalog). The key is
stored only as Fernet ciphertext (AES-128-CBC + HMAC-SHA256) under a key derived from
`settings.AROUTER_CREDENTIALS_KEY`, a persistent secret of its own so rotating SECRET_KEY or
the API key pepper does not make stored credentials unreadable. Pages and APIs show only
the last four characters.
"""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import models
from django.utils import timezone


def _fernet() -> Fernet:
    digest = hashlib.sha256(settings.AROUTER_CREDENTIALS_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode("ascii")


def decrypt(ciphertext: str) -> str:
    try:
        return _fernet().decrypt(ciphertext.encode("ascii")).decode()
    except InvalidToken:
        raise ValueError(
            "A stored provider credential cannot be decrypted: AROUTER_CREDENTIALS_KEY "
            "changed since it was saved. Save the credential again."
        ) from None


class ProviderCredential(models.Model):
    team = models.ForeignKey("accounts.Team", models.CASCADE, related_name="provider_credentials")
    upstream = models.CharField(max_length=100, help_text="an [upstreams.NAME] of the catalog")
    ciphertext = models.TextField()
    last4 = models.CharField(max_length=4)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint("team", "upstream", name="one_credential_per_team_upstream")
        ]

    def __str__(self) -> str:
        return f"{self.team} → {self.upstream} ({self.masked})"

    def __repr__(self) -> str:
        return f"<ProviderCredential {self.pk} {self.upstream} {self.masked}>"

    @classmethod
    def store(cls, team, upstream: str, secret: str) -> "ProviderCredential":
        """Create or replace the team's credential for `upstream`."""
        secret = secret.strip()
        if not secret:
            raise ValueError("A provider credential cannot be empty.")
        credential, _ = cls.objects.update_or_create(
            team=team,
            upstream=upstream,
            defaults={
                "ciphertext": encrypt(secret),
                "last4": secret[-4:],
                "updated_at": timezone.now(),
            },
        )
        return credential

    @classmethod
    async def secret_for(cls, team_id: int, upstream: str) -> str | None:
        """The team's own key for `upstream`, decrypted, or None when it has none."""
        credential = await cls.objects.filter(team_id=team_id, upstream=upstream).afirst()
        return credential.secret() if credential else None

    def secret(self) -> str:
        return decrypt(self.ciphertext)

    @property
    def masked(self) -> str:
        return f"…{self.last4}"
