"""The one-request-a-minute queue, on a fake clock: spacing, FIFO order, notes, failures."""

from __future__ import annotations

import asyncio
import functools
from itertools import pairwise

import pytest

from commands.smsc.queue import MINUTE, SPACING, DocumentQueue, duration
from tests.support.smsc import FakeClock, Notes


def make_queue(clock: FakeClock) -> DocumentQueue:
    return DocumentQueue(account="acc", clock=clock, sleep=clock.sleep)


def test_spacing_is_at_least_a_minute() -> None:
    assert SPACING >= MINUTE == 60.0


async def test_first_request_runs_at_once_without_a_note() -> None:
    clock = FakeClock()
    queue = make_queue(clock)
    notes = Notes()

    async def call() -> str:
        return "done"

    assert await queue.run(call, notify=notes) == "done"
    assert clock.sleeps == []
    assert notes.texts == []
    assert len(queue) == 0


async def test_next_request_waits_a_minute_after_the_previous_one_finished() -> None:
    clock = FakeClock(start=0.0)
    queue = make_queue(clock)
    started: list[float] = []

    async def slow_call() -> None:
        started.append(clock.now)
        clock.now += 30.0  # SMSC takes 30 s to answer

    async def call() -> None:
        started.append(clock.now)

    await queue.run(slow_call)
    clock.now += 10.0
    notes = Notes()
    await queue.run(call, notify=notes)

    # Measured from the end of the first request (t=30), not its start.
    assert started == [0.0, 30.0 + SPACING]
    assert notes.texts == [
        "SMSC takes one document request a minute for account acc, so yours is queued: "
        "place 1 (you are next), expected wait about 51 s.",
        "Your turn in the SMSC queue for account acc: sending the request now.",
    ]


async def test_a_request_after_the_minute_is_not_told_to_wait() -> None:
    clock = FakeClock()
    queue = make_queue(clock)
    notes = Notes()

    async def call() -> None:
        return None

    await queue.run(call)
    clock.now += 120.0
    await queue.run(call, notify=notes)
    assert notes.texts == []
    assert clock.sleeps == []


async def test_concurrent_requests_run_one_at_a_time_in_arrival_order() -> None:
    clock = FakeClock()
    queue = make_queue(clock)
    order: list[str] = []
    starts: list[float] = []
    active = 0
    most_active = 0
    release_first = asyncio.Event()
    notes = {name: Notes() for name in "abcd"}

    async def work(name: str) -> str:
        nonlocal active, most_active
        active += 1
        most_active = max(most_active, active)
        order.append(name)
        starts.append(clock.now)
        if name == "a":
            await release_first.wait()  # "a" is still with SMSC while the others arrive
        active -= 1
        return name.upper()

    tasks = []
    for name in "abcd":
        call = functools.partial(work, name)
        tasks.append(asyncio.create_task(queue.run(call, notify=notes[name])))
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(queue) == 4
    release_first.set()
    results = await asyncio.gather(*tasks)

    assert results == ["A", "B", "C", "D"]
    assert order == ["a", "b", "c", "d"]
    assert most_active == 1
    assert all(later - earlier >= MINUTE for earlier, later in pairwise(starts))
    assert notes["a"].texts == []
    assert notes["b"].texts[0].endswith("place 2 (1 ahead of you), expected wait about 1 min 1 s.")
    assert notes["c"].texts[0].endswith("place 3 (2 ahead of you), expected wait about 2 min 2 s.")
    assert notes["d"].texts[0].endswith("place 4 (3 ahead of you), expected wait about 3 min 3 s.")
    for name in "bcd":
        assert len(notes[name].texts) == 2
        assert notes[name].texts[1].startswith("Your turn in the SMSC queue")


async def test_a_failed_request_still_counts_and_frees_the_line() -> None:
    clock = FakeClock(start=0.0)
    queue = make_queue(clock)

    async def broken() -> None:
        raise RuntimeError("lost")

    async def call() -> float:
        return clock.now

    with pytest.raises(RuntimeError):
        await queue.run(broken)
    assert await queue.run(call) == SPACING
    assert len(queue) == 0


async def test_a_caller_that_gives_up_leaves_the_line() -> None:
    clock = FakeClock()
    queue = make_queue(clock)
    hold = asyncio.Event()
    ran: list[str] = []

    async def work(name: str) -> None:
        ran.append(name)
        if name == "first":
            await hold.wait()

    first = asyncio.create_task(queue.run(lambda: work("first")))
    await asyncio.sleep(0)
    quitter = asyncio.create_task(queue.run(lambda: work("quitter")))
    last = asyncio.create_task(queue.run(lambda: work("last")))
    await asyncio.sleep(0)
    quitter.cancel()
    await asyncio.sleep(0)
    hold.set()
    await asyncio.gather(first, last)

    assert quitter.cancelled()
    assert ran == ["first", "last"]
    assert len(queue) == 0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "1 s"), (45, "45 s"), (60, "1 min"), (61, "1 min 1 s"), (182.5, "3 min 3 s")],
)
def test_duration_reads_naturally(seconds: float, text: str) -> None:
    assert duration(seconds) == text
