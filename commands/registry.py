"""The providers the bot offers: adding one is one new package and one line here."""

from __future__ import annotations

from typing import Any

from commands.activeplatform.commands import PROVIDER as ACTIVEPLATFORM
from commands.base import Provider
from commands.invoicexpress.commands import PROVIDER as INVOICEXPRESS
from commands.smsc.commands import PROVIDER as SMSC
from commands.voipcloud.commands import PROVIDER as VOIPCLOUD

PROVIDERS: tuple[Provider[Any, Any], ...] = (INVOICEXPRESS, SMSC, VOIPCLOUD, ACTIVEPLATFORM)
