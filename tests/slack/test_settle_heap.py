"""`settle_heap`: what exists when a long-running process is ready is left out of later
garbage collections (so a full collection during a burst of commands walks only new objects),
after the garbage start-up left behind has been collected rather than kept forever."""

from __future__ import annotations

import gc
import weakref

from bot.slack.app import settle_heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the garbage collector frees it


def test_live_objects_are_frozen_and_garbage_is_collected_first() -> None:
    kept = [{"n": n} for n in range(1000)]
    garbage = weakref.ref(Node())  # unreachable at once, but alive until a collection
    before = gc.get_freeze_count()
    try:
        settle_heap()
        frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()  # the test process goes on collecting as usual
    assert frozen >= before + len(kept)
    assert garbage() is None  # collected, not frozen
