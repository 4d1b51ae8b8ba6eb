"""ProviderHTTP: reads retry with backoff, writes are sent once, failures become sentences."""

from __future__ import annotations

import email.utils
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from commands.http import (
    USER_AGENT,
    OutcomeUnknown,
    ProviderError,
    ProviderHTTP,
    ProviderUnavailable,
    RetryPolicy,
    new_client,
    status_sentence,
)

BASE = "https://provider.test"
# Secrets in the query string: one under a name redaction knows, one it does not.
API_KEY = "qs-api-key-5e1f0c"
SIGNATURE = "qs-signature-9a7d22"

Step = int | tuple[int, dict[str, str]] | type[httpx.TransportError]


class Script:
    """A MockTransport handler that answers with the given steps in turn and keeps the requests."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, type):
            # httpx's own exception texts may carry the URL; ours must not.
            raise step(f"failed talking to {request.url}", request=request)
        status, headers = step if isinstance(step, tuple) else (step, {})
        return httpx.Response(status, headers=headers, json={"ok": status < 400})


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def opened() -> AsyncIterator[list[ProviderHTTP]]:
    """Closes every ProviderHTTP a test makes."""
    made: list[ProviderHTTP] = []
    yield made
    for http in made:
        await http.aclose()


class Maker:
    def __init__(self, opened: list[ProviderHTTP], sleeps: Sleeps) -> None:
        self.opened = opened
        self.sleeps = sleeps

    def __call__(self, script: Script, retry: RetryPolicy | None = None) -> ProviderHTTP:
        client = new_client(
            base_url=BASE,
            params={"api_key": API_KEY, "sig": SIGNATURE},
            transport=httpx.MockTransport(script),
        )
        http = ProviderHTTP("Acme", client, retry=retry or RetryPolicy(), sleep=self.sleeps)
        self.opened.append(http)
        return http


@pytest.fixture
def make(opened: list[ProviderHTTP], sleeps: Sleeps) -> Maker:
    return Maker(opened, sleeps)


# --- reads -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_a_read_is_retried_with_exponential_backoff(
    make: Maker, sleeps: Sleeps, status: int
) -> None:
    script = Script(status, status, 200)
    response = await make(script).send("GET", "/items", idempotent=True)
    assert response.status_code == 200
    assert len(script.requests) == 3
    assert sleeps.delays == [0.5, 1.0]


async def test_a_read_gives_up_after_its_attempts_and_returns_the_last_answer(
    make: Maker, sleeps: Sleeps
) -> None:
    script = Script(*[503] * 5)
    response = await make(script, RetryPolicy(attempts=5)).send("GET", "/items", idempotent=True)
    assert response.status_code == 503
    assert len(script.requests) == 5
    assert sleeps.delays == [0.5, 1.0, 2.0, 4.0]


async def test_backoff_is_capped(make: Maker, sleeps: Sleeps) -> None:
    script = Script(500, 500, 500, 500)
    retry = RetryPolicy(attempts=4, base_delay=10.0, max_delay=15.0)
    await make(script, retry).send("GET", "/items", idempotent=True)
    assert sleeps.delays == [10.0, 15.0, 15.0]


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_client_errors_are_not_retried(make: Maker, sleeps: Sleeps, status: int) -> None:
    script = Script(status)
    response = await make(script).send("GET", "/items", idempotent=True)
    assert response.status_code == status
    assert len(script.requests) == 1
    assert sleeps.delays == []


@pytest.mark.parametrize(
    "error", [httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError]
)
async def test_a_read_is_retried_after_transport_errors(
    make: Maker, sleeps: Sleeps, error: type[httpx.TransportError]
) -> None:
    script = Script(error, error, 200)
    response = await make(script).send("GET", "/items", idempotent=True)
    assert response.status_code == 200
    assert len(script.requests) == 3
    assert sleeps.delays == [0.5, 1.0]


async def test_a_read_that_never_answers_is_unavailable(make: Maker, sleeps: Sleeps) -> None:
    script = Script(httpx.ReadTimeout, httpx.ReadTimeout, httpx.ReadTimeout)
    with pytest.raises(ProviderUnavailable) as caught:
        await make(script).send("GET", "/items", idempotent=True)
    assert caught.value.message == "no answer after 3 tries (ReadTimeout)"
    assert caught.value.provider == "Acme"
    assert len(script.requests) == 3
    assert sleeps.delays == [0.5, 1.0]


async def test_a_read_that_cannot_connect_is_unavailable(make: Maker, sleeps: Sleeps) -> None:
    script = Script(httpx.ConnectError, httpx.ConnectTimeout, httpx.ConnectError)
    with pytest.raises(ProviderUnavailable) as caught:
        await make(script).send("GET", "/items", idempotent=True)
    assert caught.value.message == "could not connect (ConnectError); nothing was sent"
    assert len(script.requests) == 3


# --- Retry-After -------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "delay"), [("7", 7.0), (" 0 ", 0.0), ("120", 30.0)])
async def test_retry_after_seconds_are_honoured_and_capped(
    make: Maker, sleeps: Sleeps, header: str, delay: float
) -> None:
    script = Script((429, {"Retry-After": header}), 200)
    await make(script).send("GET", "/items", idempotent=True)
    assert sleeps.delays == [delay]


def http_date(offset: timedelta) -> str:
    return email.utils.format_datetime(datetime.now(UTC) + offset, usegmt=True)


async def test_retry_after_http_date_is_honoured(make: Maker, sleeps: Sleeps) -> None:
    script = Script((503, {"Retry-After": http_date(timedelta(seconds=12))}), 200)
    await make(script).send("GET", "/items", idempotent=True)
    [delay] = sleeps.delays
    assert 9.0 <= delay <= 12.0  # whole seconds on the wire, and a little time passes


@pytest.mark.parametrize(("offset", "delay"), [(timedelta(hours=2), 30.0), (-timedelta(1), 0.0)])
async def test_retry_after_http_date_is_capped_and_never_negative(
    make: Maker, sleeps: Sleeps, offset: timedelta, delay: float
) -> None:
    script = Script((503, {"Retry-After": http_date(offset)}), 200)
    await make(script).send("GET", "/items", idempotent=True)
    assert sleeps.delays == [delay]


async def test_an_unreadable_retry_after_falls_back_to_backoff(make: Maker, sleeps: Sleeps) -> None:
    script = Script((503, {"Retry-After": "soon"}), 200)
    await make(script).send("GET", "/items", idempotent=True)
    assert sleeps.delays == [0.5]


@pytest.mark.parametrize("header", ["Sun Nov  6 08:49:37 1994", "Sun, 06 Nov 1994 08:49:37 -0000"])
async def test_retry_after_dates_without_a_zone_are_read_as_utc(
    make: Maker, sleeps: Sleeps, header: str
) -> None:
    script = Script((503, {"Retry-After": header}), 200)
    await make(script).send("GET", "/items", idempotent=True)
    assert sleeps.delays == [0.0]  # long past


# --- writes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_write_is_sent_once_whatever_the_answer(
    make: Maker, sleeps: Sleeps, method: str, status: int
) -> None:
    script = Script((status, {"Retry-After": "1"}), 200)
    response = await make(script).send(method, "/items", idempotent=False, json={"a": 1})
    assert response.status_code == status
    assert len(script.requests) == 1
    assert sleeps.delays == []


@pytest.mark.parametrize(
    "error", [httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteTimeout]
)
async def test_a_write_whose_answer_is_lost_has_an_unknown_outcome(
    make: Maker, sleeps: Sleeps, error: type[httpx.TransportError]
) -> None:
    script = Script(error, 200)
    with pytest.raises(OutcomeUnknown) as caught:
        await make(script).send("POST", "/items", idempotent=False, json={"a": 1})
    assert caught.value.message == (f"the request was sent but no answer came ({error.__name__})")
    assert len(script.requests) == 1
    assert sleeps.delays == []


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_a_write_that_cannot_connect_says_nothing_was_sent(
    make: Maker, sleeps: Sleeps, error: type[httpx.TransportError]
) -> None:
    script = Script(error, 200)
    with pytest.raises(ProviderUnavailable) as caught:
        await make(script).send("PUT", "/items", idempotent=False)
    assert not isinstance(caught.value, OutcomeUnknown)
    assert caught.value.message == f"could not connect ({error.__name__}); nothing was sent"
    assert len(script.requests) == 1
    assert sleeps.delays == []


# --- what leaves the process -------------------------------------------------------------------


def test_the_client_factory_sets_user_agent_and_never_follows_redirects() -> None:
    client = new_client(base_url=BASE, headers={"Accept": "application/json"})
    assert client.headers["User-Agent"] == USER_AGENT
    assert client.headers["Accept"] == "application/json"
    assert client.follow_redirects is False


@pytest.mark.parametrize(
    ("steps", "idempotent"),
    [
        ((httpx.ReadTimeout,) * 3, True),
        ((httpx.ConnectError,) * 3, True),
        ((httpx.ReadTimeout,), False),
        ((httpx.RemoteProtocolError,), False),
        ((httpx.ConnectError,), False),
    ],
)
async def test_error_texts_never_carry_the_query_string(
    make: Maker, steps: tuple[Step, ...], idempotent: bool
) -> None:
    script = Script(*steps)
    with pytest.raises(ProviderError) as caught:
        await make(script).send("GET" if idempotent else "POST", "/items", idempotent=idempotent)
    # The transport saw the secrets, and the exception it raised quoted them.
    assert API_KEY in str(script.requests[0].url)
    exc = caught.value
    for text in (str(exc), exc.message, repr(exc), *(str(a) for a in exc.args)):
        assert API_KEY not in text and SIGNATURE not in text
    # The transport's exception is not chained, so a traceback cannot show it either.
    assert exc.__cause__ is None and exc.__suppress_context__


@pytest.fixture
def plain_log_records() -> Iterator[None]:
    """Log records as the standard library makes them, without the redacting factory, to show
    that ProviderHTTP itself keeps the query string out of its log line."""
    previous = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous)


@pytest.mark.usefixtures("plain_log_records")
async def test_the_request_log_line_has_no_query_string(
    make: Maker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="commands.http")
    script = Script(503, 200)
    await make(script).send("GET", "/items", idempotent=True, params={"page": "2"})
    assert API_KEY in str(script.requests[0].url)
    lines = [r.getMessage() for r in caplog.records if r.name == "commands.http"]
    assert len(lines) == 2
    assert lines[0].startswith(f"Acme GET {BASE}/items -> 503 in ")
    assert lines[1].startswith(f"Acme GET {BASE}/items -> 200 in ")
    assert API_KEY not in caplog.text and SIGNATURE not in caplog.text
    assert "page=2" not in caplog.text


def test_provider_error_messages_are_redacted() -> None:
    error = ProviderError("Acme", "it said: GET /x?api_key=abcdef123&token=tok987654")
    assert error.message == "it said: GET /x?api_key=••••••&token=••••••"
    assert str(error) == error.message
    assert "abcdef123" not in repr(error)


@pytest.mark.parametrize(
    ("status", "sentence"),
    [
        (429, "it is rate-limiting us; try again in a minute"),
        (500, "it had an internal error (HTTP 500); try again later"),
        (503, "it had an internal error (HTTP 503); try again later"),
        (418, "it answered HTTP 418"),
    ],
)
def test_status_sentences(status: int, sentence: str) -> None:
    assert status_sentence(status) == sentence
