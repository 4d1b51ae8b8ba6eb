"""Cron expressions as schedules use them: 5-field crontab in the team's zone, checked to run at
all and at most once an hour, with their next run and the shortest gap between runs."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

# Every schedule posts to the channel (a report, a reminder): at most one run an hour.
MIN_INTERVAL = timedelta(hours=1)
# An expression with no run this far ahead never runs: 29 February can be eight years from the
# next (2096, then 2104), so ten years tell "rarely" from "never".
HORIZON = timedelta(days=3653)
_ANY_HOUR = datetime(2001, 1, 1, tzinfo=ZoneInfo("UTC"))


def cron_trigger(expression: str, tz: ZoneInfo, *, until: datetime | None = None) -> CronTrigger:
    """A 5-field crontab in the team's zone; ValueError with a readable reason otherwise.
    `until` ends the search for a next run there (APScheduler's `end_date`)."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"'{expression}' is not a cron expression: it needs 5 fields "
            '(minute hour day-of-month month day-of-week), like "0 9 1 * *"'
        )
    minute, hour, day, month, day_of_week = fields
    try:
        trigger: CronTrigger = CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=crontab_weekdays(day_of_week),
            timezone=tz,
            end_date=until,
        )
    except ValueError as exc:
        raise ValueError(f"'{expression}' is not a valid cron expression ({exc})") from None
    return trigger


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def crontab_weekdays(field: str) -> str:
    """Crontab counts weekdays from Sunday = 0 (7 too); APScheduler 3 from Monday = 0, and its
    `from_crontab` does not translate. Names mean the same to both, so numbers become names."""
    parts = []
    for part in field.split(","):
        span, slash, step = part.partition("/")
        named = re.sub(r"\d+", lambda m: _weekday(m.group()), span)
        parts.append(named + slash + step)
    return ",".join(parts)


def _weekday(number: str) -> str:
    index = int(number)
    if index > 7:
        raise ValueError(f"day of week {index} is not 0-7")
    return _WEEKDAYS[index]


def next_run(expression: str, tz: ZoneInfo, after: datetime) -> datetime | None:
    fire: datetime | None = cron_trigger(expression, tz).get_next_fire_time(None, after)
    return fire


def shortest_gap(
    expression: str, tz: ZoneInfo, after: datetime, runs: int = 60
) -> timedelta | None:
    """The shortest time between two of the cron's next `runs` runs (None: it runs once or
    never). Sixty runs cover every pattern a schedule may have within a day, week or month."""
    trigger = cron_trigger(expression, tz)
    fire: datetime | None = trigger.get_next_fire_time(None, after)
    shortest: timedelta | None = None
    for _ in range(runs):
        if fire is None:
            break
        following: datetime | None = trigger.get_next_fire_time(fire, fire)
        if following is None:
            break
        gap = following.astimezone(UTC) - fire.astimezone(UTC)  # elapsed, across DST too
        shortest = gap if shortest is None else min(shortest, gap)
        fire = following
    return shortest


def check_schedule_cron(expression: str, *, now: datetime) -> None:
    """Refuse, with a sentence, a valid crontab that cannot serve as a schedule: one that never
    runs (`0 9 31 2 *`) and one that runs more than once an hour (`* * * * *`)."""
    utc = ZoneInfo("UTC")
    bounded = cron_trigger(expression, utc, until=now + HORIZON)
    if bounded.get_next_fire_time(None, now) is None:
        raise ValueError(
            f"'{expression}' never runs: no date matches its day and month; pick a day the "
            'month has, like "0 9 28 2 *"'
        )
    # Runs an hour apart at the least exactly when the minute field names one minute: try
    # that field alone over one hour.
    minutes = CronTrigger(minute=expression.split()[0], timezone=utc)
    runs, fire = 0, minutes.get_next_fire_time(None, _ANY_HOUR)
    while fire is not None and fire - _ANY_HOUR < MIN_INTERVAL:
        runs += 1
        fire = minutes.get_next_fire_time(fire, fire + timedelta(seconds=1))
    if runs > 1:
        raise ValueError(
            f"'{expression}' runs {runs} times an hour; a schedule posts to the channel, so it "
            'may run at most once an hour: give one minute, like "0 * * * *" or "0 9 * * *"'
        )
