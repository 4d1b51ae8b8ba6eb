"""One way to talk HTTP to providers: client factory, retry policy for reads, error tree.

    ProviderError                 a provider call failed; `message` is one sentence for people
    ├── ProviderUnavailable       could not reach it, or it kept failing (timeouts, 5xx, 429)
    ├── ProviderRejected          it answered with an error (4xx, or an error body with HTTP 200)
    │   └── ProviderAuthError     credentials (or source IP) refused
    └── OutcomeUnknown            a write was sent but its answer never came or could not be
                                  read: do not retry

Reads (`idempotent=True`) retry on timeouts, connection errors, 429 and 5xx with exponential
backoff, honouring `Retry-After`. Writes are sent once: a connect failure means nothing was sent
(`ProviderUnavailable`); a timeout or lost connection after sending is `OutcomeUnknown`. The
clients read the answer to a write the same way: a clear refusal is `ProviderRejected`, a readable
success is the result, and anything else (an HTML page, bytes that are not JSON, a cut-off body,
a shape the client does not know, a 3xx, a 5xx unless the provider documents it as a refusal) is
`OutcomeUnknown` through `unreadable_write`, never "failed", which would invite a second send.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from commands.secrets import redact

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(20.0, connect=5.0)
USER_AGENT = "billing-bot/0.1"


class ProviderError(Exception):
    def __init__(self, provider: str, message: str, *, status: int | None = None) -> None:
        message = redact(message)
        super().__init__(message)
        self.provider = provider
        self.message = message
        self.status = status


class ProviderUnavailable(ProviderError):
    pass


class ProviderRejected(ProviderError):
    pass


class ProviderAuthError(ProviderRejected):
    pass


class OutcomeUnknown(ProviderError):
    pass


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        hinted = retry_after(response) if response is not None else None
        if hinted is not None:
            return min(hinted, self.max_delay)
        return float(min(self.base_delay * (2**attempt), self.max_delay))


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # asctime and "-0000" dates carry no zone: HTTP dates are UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


Sleep = Callable[[float], Awaitable[None]]
# Sees each attempt: HTTP method, status (None when no answer came) and seconds until the answer's
# headers (or the failure). The bot counts these for its metrics.
Observer = Callable[[str, int | None, float], None]


def new_client(
    *,
    base_url: str,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
) -> httpx.AsyncClient:
    """The one factory for provider HTTP clients."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        params=params,
        transport=transport,
        timeout=timeout,
        follow_redirects=False,
    )


class ProviderHTTP:
    """Sends a provider's requests with the retry policy; turns transport failures into errors.

    Status codes are the provider client's to interpret: `send` returns every response it does
    not retry. Each `observers` entry sees every attempt (see `Observer`).
    """

    def __init__(
        self,
        provider: str,
        client: httpx.AsyncClient,
        *,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.provider = provider
        self.client = client
        self.retry = retry
        self.sleep = sleep
        self.observers: list[Observer] = []

    def _observe(self, method: str, status: int | None, started: float) -> None:
        elapsed = time.monotonic() - started
        for observer in self.observers:
            try:
                observer(method, status, elapsed)
            except Exception:  # counting must never break a provider call
                log.exception("a request observer failed")

    async def send(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool,
        **kwargs: Any,
    ) -> httpx.Response:
        attempts = self.retry.attempts if idempotent else 1
        last: httpx.Response | None = None
        for attempt in range(attempts):
            started = time.monotonic()
            try:
                response = await self.client.request(method, url, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                self._observe(method, None, started)
                if attempt + 1 < attempts:
                    await self.sleep(self.retry.delay(attempt, None))
                    continue
                raise ProviderUnavailable(
                    self.provider,
                    f"could not connect ({type(exc).__name__}); nothing was sent",
                ) from None
            except httpx.TransportError as exc:
                self._observe(method, None, started)
                if not idempotent:
                    raise OutcomeUnknown(
                        self.provider,
                        f"the request was sent but no answer came ({type(exc).__name__})",
                    ) from None
                if attempt + 1 < attempts:
                    await self.sleep(self.retry.delay(attempt, None))
                    continue
                raise ProviderUnavailable(
                    self.provider,
                    f"no answer after {attempts} tries ({type(exc).__name__})",
                ) from None
            self._observe(method, response.status_code, started)
            log.debug(
                "%s %s %s -> %s in %.0f ms",
                self.provider,
                method,
                redact(str(response.request.url.copy_with(query=None))),
                response.status_code,
                (time.monotonic() - started) * 1000,
            )
            retryable = response.status_code == 429 or response.status_code >= 500
            if idempotent and retryable and attempt + 1 < attempts:
                last = response
                await self.sleep(self.retry.delay(attempt, response))
                continue
            return response
        assert last is not None  # pragma: no cover - the loop returns or raises
        return last  # pragma: no cover

    async def aclose(self) -> None:
        await self.client.aclose()


def http_of(client: object) -> list[ProviderHTTP]:
    """The `ProviderHTTP`s a provider client holds (its attributes of that type)."""
    values = vars(client).values() if hasattr(client, "__dict__") else ()
    return [value for value in values if isinstance(value, ProviderHTTP)]


def unreadable_write(provider: str, response: httpx.Response, what: str) -> OutcomeUnknown:
    """The answer to a write that is neither a clear refusal nor a readable success.

    `what` names the write as people know it ("the transfer for customer 10023"). A 5xx gets
    its own words: the provider reports a failure without saying whether it acted first.
    """
    status = response.status_code
    if status >= 500:
        said = f"{provider} answered with a server error (HTTP {status})"
        return OutcomeUnknown(
            provider,
            f"{what} was sent and {said}, which does not say whether it happened",
            status=status,
        )
    kind = response.headers.get("content-type", "").split(";")[0].strip() or "no content type"
    return OutcomeUnknown(
        provider,
        f"{what} was sent, but {provider}'s answer (HTTP {status}, {kind}) could not be read",
        status=status,
    )


def status_sentence(status: int) -> str:
    if status == 429:
        return "it is rate-limiting us; try again in a minute"
    if status >= 500:
        return f"it had an internal error (HTTP {status}); try again later"
    return f"it answered HTTP {status}"
