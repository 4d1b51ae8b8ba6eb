"""The shared request budget: parsing `VOIPCLOUD_RATE_LIMIT`, the sliding window, waiting
without sleeping, the refill message and the expected finish of a long job."""

from __future__ import annotations

from datetime import timedelta

import pytest

from commands.base import CommandError
from commands.voipcloud.budget import BudgetSpent, RateBudget, RateLimit
from tests.support.voipcloud import NOW, Clock, Sleeps


@pytest.mark.parametrize(
    ("text", "requests", "seconds"),
    [
        ("100/15m", 100, 900),
        ("10/1m", 10, 60),
        ("5/30s", 5, 30),
        (" 1000 / 1h ", 1000, 3600),
        ("20/min", 20, 60),
    ],
)
def test_rate_limit_forms(text: str, requests: int, seconds: int) -> None:
    assert RateLimit.parse(text) == RateLimit(requests, timedelta(seconds=seconds))


def test_off_means_no_limit() -> None:
    assert RateLimit.parse("off") is None
    assert RateLimit.parse("OFF") is None


@pytest.mark.parametrize("text", ["", "100", "100/15", "100/15d", "0/1m", "5/0s", "-5/1m", "x/1m"])
def test_bad_rate_limits_are_explained(text: str) -> None:
    with pytest.raises(ValueError, match="is not a rate limit"):
        RateLimit.parse(text)


def test_rate_limit_reads_as_words() -> None:
    assert str(RateLimit(100, timedelta(minutes=15))) == "100 per 15 min"
    assert str(RateLimit(5, timedelta(seconds=30))) == "5 per 30 s"
    assert str(RateLimit(1000, timedelta(hours=1))) == "1000 per 1 h"


def budget(limit: str, clock: Clock) -> RateBudget:
    return RateBudget(
        RateLimit.parse(limit), provider="VoIPcloud", clock=clock, sleep=Sleeps(clock)
    )


async def test_window_slides_one_request_at_a_time() -> None:
    clock = Clock()
    b = budget("3/1m", clock)
    for _ in range(3):
        await b.acquire(wait=False)
        clock.advance(10)
    # Sent at +0, +10, +20; now +30: full until the first leaves the window at +60.
    assert b.available() == 0
    with pytest.raises(BudgetSpent):
        await b.acquire(wait=False)
    clock.advance(30)
    assert b.available() == 1
    await b.acquire(wait=False)
    assert b.available() == 0
    clock.advance(10)  # +70: the second (+10) has left
    assert b.available() == 1


async def test_spent_budget_says_when_it_refills_in_minutes_and_utc_clock_time() -> None:
    clock = Clock()
    b = budget("2/15m", clock)
    await b.acquire(wait=False)
    clock.advance(60)
    await b.acquire(wait=False)
    clock.advance(120)
    with pytest.raises(CommandError) as caught:
        await b.acquire(wait=False)
    # The first request (09:30) leaves the window at 09:45, 12 minutes after 09:33.
    assert caught.value.message == (
        "The VoIPcloud request budget (2 per 15 min) is spent; it refills in 12 min "
        "(at 09:45 UTC). Try again then."
    )
    assert isinstance(caught.value, BudgetSpent)
    assert caught.value.ready_at == NOW + timedelta(minutes=15)


async def test_short_waits_are_given_in_seconds() -> None:
    clock = Clock()
    b = budget("1/30s", clock)
    await b.acquire(wait=False)
    clock.advance(20)
    with pytest.raises(BudgetSpent, match=r"refills in 10 s \(at 09:30 UTC\)"):
        await b.acquire(wait=False)


async def test_acquire_waits_for_the_window_without_sleeping_for_real() -> None:
    clock = Clock()
    sleeps = Sleeps(clock)
    b = RateBudget(RateLimit.parse("2/1m"), provider="VoIPcloud", clock=clock, sleep=sleeps)
    for _ in range(5):
        await b.acquire(wait=True)
    # Five requests at two a minute: the 3rd and 4th wait for +60, the 5th for +120.
    assert sleeps.delays == [60.0, 60.0]
    assert clock.now == NOW + timedelta(seconds=120)


def test_eta_of_a_long_job() -> None:
    clock = Clock()
    b = budget("3/1m", clock)
    assert b.eta(3) == NOW  # fits in the window now
    assert b.eta(4) == NOW + timedelta(minutes=1)
    assert b.eta(7) == NOW + timedelta(minutes=2)
    assert b.available() == 3  # estimating spends nothing


async def test_eta_counts_requests_already_in_the_window() -> None:
    clock = Clock()
    b = budget("3/1m", clock)
    for _ in range(3):
        await b.acquire(wait=False)
        clock.advance(10)
    # Sent at +0, +10, +20; now +30: the next ones can go at +60, +70, +80, then +120.
    assert b.eta(1) == NOW + timedelta(seconds=60)
    assert b.eta(3) == NOW + timedelta(seconds=80)
    assert b.eta(4) == NOW + timedelta(seconds=120)


async def test_eta_matches_what_waiting_actually_takes() -> None:
    clock = Clock()
    b = budget("4/30s", clock)
    await b.acquire(wait=False)
    clock.advance(7)
    expected = b.eta(11)
    for _ in range(11):
        await b.acquire(wait=True)
    assert clock.now == expected


async def test_no_limit_never_waits() -> None:
    clock = Clock()
    sleeps = Sleeps(clock)
    b = RateBudget(None, provider="VoIPcloud", clock=clock, sleep=sleeps)
    for _ in range(1000):
        await b.acquire(wait=False)
    assert b.available() is None
    assert b.eta(10_000) == NOW
    assert sleeps.delays == []
