"""VoIPcloud fixtures: a fresh sandbox whose today is `TODAY`, and a client that reaches it
in-process with the sandbox's credentials, no request budget and a clock that sleeps move."""

from __future__ import annotations

import pytest

from commands.voipcloud.client import VoipcloudClient
from commands.voipcloud.sandbox import VoipcloudSandbox
from tests.support.voipcloud import new_sandbox, open_client


@pytest.fixture
def sandbox() -> VoipcloudSandbox:
    return new_sandbox()


@pytest.fixture
def client(sandbox: VoipcloudSandbox) -> VoipcloudClient:
    return open_client(sandbox)
