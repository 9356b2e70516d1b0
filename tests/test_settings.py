"""Typed environment helpers fail loudly on bad values."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from arouter.settings import env_bool, env_float, env_int, env_list, persistent_secret


def test_env_bool(monkeypatch):
    monkeypatch.setenv("X_FLAG", "yes")
    assert env_bool("X_FLAG") is True
    monkeypatch.setenv("X_FLAG", "0")
    assert env_bool("X_FLAG", True) is False
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG='maybe' is not a boolean"):
        env_bool("X_FLAG")


def test_env_int_and_float(monkeypatch):
    monkeypatch.setenv("X_NUM", "12")
    assert env_int("X_NUM", 1) == 12
    assert env_float("X_NUM", 1.0) == 12.0
    monkeypatch.setenv("X_NUM", "twelve")
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        env_int("X_NUM", 1)
    with pytest.raises(ImproperlyConfigured, match="not a number"):
        env_float("X_NUM", 1.0)
    monkeypatch.setenv("X_NUM", "-3")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env_int("X_NUM", 1, minimum=1)


def test_env_defaults_and_lists(monkeypatch):
    monkeypatch.delenv("X_MISSING", raising=False)
    assert env_int("X_MISSING", 7) == 7
    monkeypatch.setenv("X_LIST", " a, b ,,c ")
    assert env_list("X_LIST", []) == ["a", "b", "c"]


def test_persistent_secret_is_made_once(tmp_path, monkeypatch):
    monkeypatch.delenv("X_SECRET", raising=False)
    first = persistent_secret("X_SECRET", tmp_path)
    assert first == persistent_secret("X_SECRET", tmp_path)
    assert (tmp_path / "x_secret").stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("X_SECRET", "from-env")
    assert persistent_secret("X_SECRET", tmp_path) == "from-env"
