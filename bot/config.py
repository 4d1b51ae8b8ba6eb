"""The bot's own configuration (Slack, database, roles, schedules), validated at start.

Provider settings live with their providers (`commands/<provider>/commands.py`). Bad values
stop the process with one line per bad variable, all of them at once: see `config_error_lines`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.storage.sealed import Keyring, key_bytes

SLACK_ID = re.compile(r"^[UWS][A-Z0-9]+$")

IdTuple = Annotated[tuple[str, ...], NoDecode]
# A bearer token on a public port is only as good as its length.


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    slack_bot_token: SecretStr | None = Field(
        None,
        description="bot token (`xoxb-…`); required for `serve` and `socket`",
        examples=["xoxb-your-bot-token"],
    )
    slack_signing_secret: SecretStr | None = Field(
        None, description="request signing secret; required for `serve`", examples=["your-secret"]
    )
    slack_app_token: SecretStr | None = Field(
        None,
        description="app-level token (`xapp-…`, with `connections:write`); required for `socket`",
        examples=["xapp-your-app-token"],
    )
    slack_api_url: str = Field(
        "https://slack.com/api/",
        description="Web API base URL; change it only for a Slack-compatible test double",
    )
    database_url: str = Field(
        "sqlite:///billing-bot.db",
        description=(
            "SQLAlchemy URL, SQLite or PostgreSQL (`postgresql://…`; run `billing-bot db upgrade` "
            "before starting on PostgreSQL)"
        ),
    )
    billing_spool_dir: Path | None = Field(
        None,
        description=(
            "directory where a provider's answer to an approved run is kept (redacted) while the "
            "database cannot record it, until it can; default `billing-bot-spool` beside the "
            "SQLite file, or in the working directory for PostgreSQL"
        ),
    )
    billing_channel: str | None = Field(
        None,
        description=(
            "channel ID for scheduled posts (reminders, reports); unset, adding a schedule is "
            "refused (the console uses a channel of its own)"
        ),
        examples=["C0123456789"],
    )
    billing_timezone: str = Field(
        "UTC",
        description="IANA zone for schedules and default periods",
        examples=["Europe/Lisbon"],
    )
    billing_viewers: IdTuple = Field(
        (),
        description=(
            "viewers: comma-separated user IDs (`U…`/`W…`) or user-group IDs (`S…`); nobody "
            "listed means nobody holds the role"
        ),
        examples=["S0FINANCE"],
    )
    billing_operators: IdTuple = Field(
        (),
        description=(
            "operators, listed as for `BILLING_VIEWERS`; roles are cumulative: viewer < operator "
            "< approver < admin"
        ),
        examples=["U0AAAAAAA,U0BBBBBBB"],
    )
    billing_approvers: IdTuple = Field(
        (), description="approvers, listed as for `BILLING_VIEWERS`", examples=["U0CCCCCCC"]
    )
    billing_admins: IdTuple = Field(
        (), description="admins, listed as for `BILLING_VIEWERS`", examples=["U0DDDDDDD"]
    )
    approval_ttl_hours: float = Field(
        24, gt=0, le=24 * 30, description="how long an approval request stays open, in hours"
    )
    billing_notify_approvers: Literal["on", "off"] = Field(
        "on",
        description=(
            "a direct message to everyone who could approve a new request (never its requester), "
            "with its summary and a link to its card; `off` sends none (the reminder in the "
            "card's thread at half the time to live, and the requester's message about the "
            "decision, go either way)"
        ),
    )
    billing_policy_file: Path | None = Field(
        None,
        description=(
            "approval rules, YAML or TOML (several approvals, admin-only approvals, ceilings); "
            "unset, one approval by any approver other than the requester"
        ),
        examples=["examples/policy.yml"],
    )
    billing_secret_key: SecretStr | None = Field(
        None,
        description=(
            "base64 of 32 random bytes (`openssl rand -base64 32`): encrypts the step-up "
            "enrolment seeds (AES-GCM); required when a policy rule says `step_up: totp`"
        ),
        examples=["base64-of-32-random-bytes"],
    )
    billing_secret_key_previous: SecretStr | None = Field(
        None,
        description=(
            "the key being replaced, only while `billing-bot keys rotate` re-encrypts the seeds "
            "under `BILLING_SECRET_KEY`; unset it afterwards"
        ),
        examples=["base64-of-the-old-key"],
    )
    port: int = Field(3000, ge=1, le=65535, description="HTTP port of `serve` (`--port` wins)")
    metrics_token: SecretStr | None = Field(
        None,
        description=(
            "bearer token `GET /metrics` asks for on `serve`'s public port "
            "(`Authorization: Bearer …`); unset, `/metrics` is not served there "
            "(`--metrics-port` serves it on a port of its own); make it long and random "
            "(`openssl rand -hex 32`)"
        ),
        examples=["a-long-random-metrics-token"],
    )
    scheduler_tick_seconds: float = Field(
        15,
        ge=0.2,
        le=300,
        description="how often a replica checks for due schedules and for leadership, in seconds",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="`json` writes one JSON object per line, for log collectors"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO",
        description=(
            "`DEBUG` adds each HTTP and provider request and library detail; `INFO` is one line "
            "per command"
        ),
    )

    @field_validator("log_format", "log_level", "billing_notify_approvers", mode="before")
    @classmethod
    def _case(cls, value: Any, info: Any) -> Any:
        if not isinstance(value, str):
            return value
        return value.strip().upper() if info.field_name == "log_level" else value.strip().lower()

    @field_validator(
        "billing_viewers", "billing_operators", "billing_approvers", "billing_admins", mode="before"
    )
    @classmethod
    def _ids(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, list | tuple):
            items = [str(v).strip() for v in value]
        else:
            items = [part.strip() for part in str(value or "").split(",")]
        items = [item for item in items if item]
        bad = [item for item in items if not SLACK_ID.match(item)]
        if bad:
            raise ValueError(
                f"{', '.join(bad)} is not a Slack user ID (U…/W…) or user-group ID (S…)"
            )
        return tuple(items)

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _token(cls, value: Any) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(raw, str):
            return raw
        if not raw.strip():
            return None  # `METRICS_TOKEN=` left empty: not set
        return raw.strip()

    @field_validator("billing_secret_key", "billing_secret_key_previous")
    @classmethod
    def _key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            key_bytes(value.get_secret_value())  # its message never quotes the value
        return value

    @field_validator("billing_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"'{value}' is not an IANA time zone such as Europe/Lisbon") from None
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not re.match(r"^https?://", value):
            raise ValueError("must be an http(s) URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        if not re.match(r"^(sqlite|postgres|postgresql)(\+\w+)?://", value):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @property
    def spool_dir(self) -> Path:
        """Where spooled answers are kept (bot/storage/spool.py)."""
        if self.billing_spool_dir is not None:
            return self.billing_spool_dir
        scheme, _, rest = self.database_url.partition("://")
        if scheme.startswith("sqlite") and rest.startswith("/") and rest != "/":
            return Path(rest[1:]).parent / "billing-bot-spool"
        return Path("billing-bot-spool")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.billing_timezone)

    @property
    def notify_approvers(self) -> bool:
        return self.billing_notify_approvers == "on"

    @property
    def roles_configured(self) -> bool:
        return bool(
            self.billing_viewers
            or self.billing_operators
            or self.billing_approvers
            or self.billing_admins
        )

    def secrets(self) -> list[str]:
        tokens = (
            self.slack_bot_token,
            self.slack_signing_secret,
            self.slack_app_token,
            self.metrics_token,
            self.billing_secret_key,
            self.billing_secret_key_previous,
        )
        return [t.get_secret_value() for t in tokens if t is not None]

    def keyring(self) -> Keyring | None:
        """The step-up seeds' keys, or None when `BILLING_SECRET_KEY` is unset."""
        if self.billing_secret_key is None:
            return None
        previous = self.billing_secret_key_previous
        return Keyring(
            key_bytes(self.billing_secret_key.get_secret_value()),
            key_bytes(previous.get_secret_value()) if previous is not None else None,
        )


def config_error_line(exc: ValidationError, model: type[BaseSettings]) -> str:
    """One line naming the first bad variable, as people set it."""
    return config_error_lines(exc, model)[0]


def config_error_lines(exc: ValidationError, model: type[BaseSettings]) -> list[str]:
    """One line per bad variable, as people set it, in the order the model declares them."""
    prefix = str(model.model_config.get("env_prefix", ""))
    lines: list[str] = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        message = str(error["msg"]).removeprefix("Value error, ")
        line = f"configuration error: {(prefix + field).upper()}: {message}"
        if line not in lines:
            lines.append(line)
    return lines
