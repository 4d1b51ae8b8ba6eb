"""The README's command tables are the ones the declarations generate."""

from __future__ import annotations

from pathlib import Path

from scripts.commands_doc import BEGIN, END, reference

ROOT = Path(__file__).resolve().parents[1]


def test_readme_command_reference_is_current() -> None:
    readme = (ROOT / "README.md").read_text()
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    assert readme[start:end] == reference(), (
        "README command tables are stale: run `.venv/bin/python scripts/commands_doc.py` and "
        "paste its output between the markers"
    )


def test_env_example_names_every_documented_variable() -> None:
    example = (ROOT / ".env.example").read_text()
    for name in (
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_APP_TOKEN",
        "SLACK_API_URL",
        "DATABASE_URL",
        "BILLING_CHANNEL",
        "BILLING_TIMEZONE",
        "BILLING_VIEWERS",
        "BILLING_OPERATORS",
        "BILLING_APPROVERS",
        "BILLING_ADMINS",
        "APPROVAL_TTL_HOURS",
        "LOG_FORMAT",
        "LOG_LEVEL",
        "INVOICEXPRESS_ACCOUNT",
        "INVOICEXPRESS_API_KEY",
        "INVOICEXPRESS_BASE_URL",
        "SMSC_LOGIN",
        "SMSC_PASSWORD",
        "SMSC_BASE_URL",
        "SMSC_DOCUMENT_SPACING",
        "VOIPCLOUD_BASE_URL",
        "VOIPCLOUD_TOKEN",
        "VOIPCLOUD_GOOGLE_CAPTCHA",
        "VOIPCLOUD_RATE_LIMIT",
        "ACTIVEPLATFORM_BASE_URL",
        "ACTIVEPLATFORM_API_TOKEN",
        "ACTIVEPLATFORM_RESELLER_ID",
    ):
        assert name in example, name
