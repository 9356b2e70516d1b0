"""Per-team upstream credentials: encrypted at rest, shown by their last four characters."""

import pytest
from django.db import IntegrityError, connection
from django.test import override_settings

from credentials.models import ProviderCredential

SECRET = "sk-proj-abcdefghijklmnop-WXYZ"


def test_secret_is_stored_encrypted_and_read_back(team):
    credential = ProviderCredential.store(team, "openai", SECRET)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ciphertext, last4 FROM credentials_providercredential WHERE id = %s",
            [credential.pk],
        )
        ciphertext, last4 = cursor.fetchone()
    assert SECRET not in ciphertext
    assert "abcdefghijklmnop" not in ciphertext
    assert last4 == "WXYZ"
    assert ProviderCredential.objects.get(pk=credential.pk).secret() == SECRET


def test_only_the_last_four_characters_are_shown(team):
    credential = ProviderCredential.store(team, "openai", SECRET)
    assert credential.masked == "…WXYZ"
    assert SECRET not in str(credential)
    assert SECRET not in repr(credential)


def test_storing_again_replaces_the_teams_credential(team):
    ProviderCredential.store(team, "groq", "gsk-first-1111")
    ProviderCredential.store(team, "groq", "gsk-second-2222")
    assert ProviderCredential.objects.filter(team=team, upstream="groq").count() == 1
    assert ProviderCredential.objects.get(team=team, upstream="groq").secret() == "gsk-second-2222"


def test_one_credential_per_team_and_upstream(team):
    ProviderCredential.store(team, "openai", SECRET)
    with pytest.raises(IntegrityError):
        ProviderCredential.objects.create(team=team, upstream="openai", ciphertext="x", last4="x")


def test_teams_do_not_share_credentials(team, outsider):
    ProviderCredential.store(team, "openai", SECRET)
    assert not ProviderCredential.objects.filter(team=outsider.teams.get()).exists()


def test_empty_secret_is_refused(team):
    with pytest.raises(ValueError, match="empty"):
        ProviderCredential.store(team, "openai", "   ")


def test_a_changed_key_cannot_decrypt_and_says_why(team):
    credential = ProviderCredential.store(team, "openai", SECRET)
    with (
        override_settings(AROUTER_CREDENTIALS_KEY="another-key"),
        pytest.raises(ValueError, match="AROUTER_CREDENTIALS_KEY"),
    ):
        credential.secret()


@pytest.mark.django_db(transaction=True)
async def test_secret_for_looks_up_the_teams_key(team):
    from asgiref.sync import sync_to_async

    await sync_to_async(ProviderCredential.store)(team, "openai", SECRET)
    assert await ProviderCredential.secret_for(team.pk, "openai") == SECRET
    assert await ProviderCredential.secret_for(team.pk, "groq") is None
