"""Configuration: the variable names of SPEC §2/§3, the rate limit forms and path overrides."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from commands.voipcloud import client as api
from commands.voipcloud.budget import DEFAULT_RATE_LIMIT, RateLimit
from commands.voipcloud.client import Paths
from commands.voipcloud.commands import PROVIDER, VoipcloudSettings

PATH_NAMES = (
    "CUSTOMER_BALANCE",
    "PARTNER_BALANCE",
    "MOVE_FUNDS",
    "REGISTER_CUSTOMER",
    "CONFIRM_EMAIL",
    "LOGIN_CUSTOMER",
    "RESET_PASSWORD",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")  # no stray .env
    for name in ("BASE_URL", "TOKEN", "GOOGLE_CAPTCHA", "RATE_LIMIT"):
        monkeypatch.delenv(f"VOIPCLOUD_{name}", raising=False)
    for name in PATH_NAMES:
        monkeypatch.delenv(f"VOIPCLOUD_PATH_{name}", raising=False)


def variable_of(exc: ValidationError) -> str:
    """The variable a bad value came from, as the bot names it at start."""
    field = str(exc.errors()[0]["loc"][0])
    return (str(VoipcloudSettings.model_config.get("env_prefix", "")) + field).upper()


def test_read_from_the_documented_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOIPCLOUD_BASE_URL", "https://au.voipcloud.online/api/integration/v2")
    monkeypatch.setenv("VOIPCLOUD_TOKEN", "key-123456")
    monkeypatch.setenv("VOIPCLOUD_GOOGLE_CAPTCHA", "captcha-123456")
    monkeypatch.setenv("VOIPCLOUD_RATE_LIMIT", "10/1m")
    settings = VoipcloudSettings()
    assert settings.base_url == "https://au.voipcloud.online/api/integration/v2"
    assert settings.token is not None and settings.token.get_secret_value() == "key-123456"
    assert settings.google_captcha is not None
    assert settings.google_captcha.get_secret_value() == "captcha-123456"
    assert settings.rate_limit == RateLimit(10, timedelta(minutes=1))
    assert PROVIDER.configured(settings)
    assert "key-123456" not in repr(settings)


def test_defaults_and_unconfigured() -> None:
    settings = VoipcloudSettings()
    assert settings.rate_limit == DEFAULT_RATE_LIMIT == RateLimit(100, timedelta(minutes=15))
    assert settings.google_captcha is None
    assert settings.paths() == Paths()
    assert not PROVIDER.configured(settings)


def test_blank_captcha_is_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOIPCLOUD_GOOGLE_CAPTCHA", "  ")
    assert VoipcloudSettings().google_captcha is None


def test_rate_limit_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOIPCLOUD_RATE_LIMIT", "off")
    assert VoipcloudSettings().rate_limit is None


def test_bad_rate_limit_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOIPCLOUD_RATE_LIMIT", "100 per 15 minutes")
    with pytest.raises(ValidationError) as caught:
        VoipcloudSettings()
    assert variable_of(caught.value) == "VOIPCLOUD_RATE_LIMIT"
    assert "'100 per 15 minutes' is not a rate limit" in caught.value.errors()[0]["msg"]


def test_every_path_can_be_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PATH_NAMES:
        monkeypatch.setenv(f"VOIPCLOUD_PATH_{name}", f"/v3/{name.lower()}")
    paths = VoipcloudSettings().paths()
    assert paths == Paths(**{name.lower(): f"/v3/{name.lower()}" for name in PATH_NAMES})
    assert [Paths.variable(n) for n in Paths.names()] == [f"VOIPCLOUD_PATH_{n}" for n in PATH_NAMES]


def test_default_paths_are_the_documented_ones() -> None:
    assert Paths() == Paths(
        customer_balance="/get-customer-balance",
        partner_balance="/get-partner-balance",
        move_funds="/move-funds",
        register_customer="/register-customer",
        confirm_email="/confirm-customer-email",
        login_customer="/login-customer",
        reset_password="/reset-customer-password",
    )
    assert api.MOVE_FUNDS == "/move-funds"


def test_bad_path_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOIPCLOUD_PATH_MOVE_FUNDS", "move funds")
    with pytest.raises(ValidationError) as caught:
        VoipcloudSettings()
    assert variable_of(caught.value) == "VOIPCLOUD_PATH_MOVE_FUNDS"


def test_bad_base_url_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOIPCLOUD_BASE_URL", "au.voipcloud.online")
    with pytest.raises(ValidationError) as caught:
        VoipcloudSettings()
    assert variable_of(caught.value) == "VOIPCLOUD_BASE_URL"
