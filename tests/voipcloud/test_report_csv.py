"""The balance report's CSV, byte for byte: written row by row straight into UTF-8."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from commands.types import Period
from commands.voipcloud.report import AccountBalance, Readings, Unread, csv_file

PERIOD = Period(date(2026, 11, 1), date(2026, 11, 30))


def test_every_account_in_the_order_asked_with_figures_as_sent() -> None:
    readings = Readings(
        period=PERIOD,
        asked=("10001", "10002", "10003"),
        balances=(
            AccountBalance(
                "10001", Decimal("10.5"), Decimal("0"), Decimal("2.125"), Decimal("8.375")
            ),
            AccountBalance("10003", Decimal("-1"), Decimal("5.00"), Decimal("0"), Decimal("4.00")),
        ),
        unread=(Unread("10002", 'VoIPcloud said "no such customer" — check the number, please'),),
    )

    file = csv_file(readings)

    assert (file.filename, file.mime) == (
        "voipcloud-balances-2026-11-01-2026-11-30.csv",
        "text/csv",
    )
    expected = [
        "account,opening_balance,payments,charges,closing_balance,change,note",
        "10001,10.5,0,2.125,8.375,-2.125,",
        '10002,,,,,,"not read: VoIPcloud said ""no such customer"" — check the number, please"',
        "10003,-1,5.00,0,4.00,5.00,",
    ]
    assert file.content == "".join(f"{line}\r\n" for line in expected).encode()


def test_a_report_of_nothing_read_still_lists_every_account() -> None:
    readings = Readings(
        period=PERIOD,
        asked=("10001", "10002"),
        balances=(),
        unread=(Unread("10001", "timed out"), Unread("10002", "timed out")),
    )

    assert csv_file(readings).content.decode("utf-8").splitlines() == [
        "account,opening_balance,payments,charges,closing_balance,change,note",
        "10001,,,,,,not read: timed out",
        "10002,,,,,,not read: timed out",
    ]
