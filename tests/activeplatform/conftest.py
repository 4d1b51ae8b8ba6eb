"""ActivePlatform fixtures: a fresh sandbox (tests open clients on it with the options they need,
through `tests.support.activeplatform.open_client`)."""

from __future__ import annotations

import pytest

from commands.activeplatform.sandbox import ActivePlatformSandbox


@pytest.fixture
def sandbox() -> ActivePlatformSandbox:
    return ActivePlatformSandbox()
