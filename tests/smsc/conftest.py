"""SMSC fixtures: a fake clock, a sandbox on it, and `env` (a client on a sandbox of its own, the
clock they share and the notes the requester was told)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from commands.smsc.sandbox import SmscSandbox
from tests.support.smsc import Env, FakeClock, make_env


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox(clock: FakeClock) -> SmscSandbox:
    return SmscSandbox(clock=clock)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    env = make_env()
    yield env
    await env.client.aclose()
