"""Redaction: registered values and secret-looking parameters never leave the process."""

from __future__ import annotations

import io
import logging
import traceback
import uuid
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import httpx
import pytest

from commands import secrets
from commands.secrets import (
    MASK,
    install_log_redaction,
    redact,
    redact_any,
    register_secret,
)


def fresh(prefix: str = "s3cret") -> str:
    """A value no other test has registered, so only this test's registration can mask it."""
    return f"{prefix}-{uuid.uuid4().hex}"


# --- redact ------------------------------------------------------------------------------------


def test_a_registered_value_is_masked_wherever_it_appears() -> None:
    secret = fresh()
    assert redact(f"before {secret} after") == f"before {secret} after"  # not yet known
    register_secret(secret)
    assert redact(f"before {secret} after") == f"before {MASK} after"
    assert redact(f"{secret}{secret}") == MASK * 2


def test_url_encoded_forms_of_a_registered_value_are_masked() -> None:
    secret = fresh("p@ss word/+&")
    register_secret(secret)
    assert quote(secret, safe="") != quote_plus(secret)  # two distinct encodings
    assert redact(f"/login?x={quote(secret, safe='')}") == f"/login?x={MASK}"
    assert redact(f"/login?x={quote_plus(secret)}&y=1") == f"/login?x={MASK}&y=1"


def test_the_longest_registered_value_is_masked_first() -> None:
    short = fresh()
    long = short + "-tail"
    register_secret(short, long)
    assert redact(long) == MASK  # not "••••••-tail"


def test_a_longer_value_is_masked_whole_whatever_its_spelling() -> None:
    short = fresh("zz")  # sorts after the longer value that contains it
    long = f"aa-{short}-tail"
    register_secret(short, long)
    assert redact(f"[{long}] [{short}]") == f"[{MASK}] [{MASK}]"


def test_short_and_missing_values_are_not_registered() -> None:
    register_secret("abc", None, "")
    assert redact("abc def") == "abc def"
    register_secret("wxyz")  # four characters are enough
    assert redact("wxyz def") == f"{MASK} def"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "https://acme.app.invoicexpress.com/sequences.json?api_key=zz9xk1&page=2",
            f"https://acme.app.invoicexpress.com/sequences.json?api_key={MASK}&page=2",
        ),
        (
            "/sys/documents.php?login=bob&psw=hunter22&id=5",
            f"/sys/documents.php?login=bob&psw={MASK}&id=5",
        ),
        ("GET /x?TOKEN=AbC123", f"GET /x?TOKEN={MASK}"),
        ("api_key%3Dzz9xk1", f"api_key%3D{MASK}"),
        ("google_captcha=03AGdBq25", f"google_captcha={MASK}"),
        ('{"api_key": "zz9xk1", "serie": "2027"}', f'{{"api_key": "{MASK}", "serie": "2027"}}'),
        ('{"password":"hunter22"}', f'{{"password":"{MASK}"}}'),
        ('{"at_password": "czNjcmV0"}', f'{{"at_password": "{MASK}"}}'),
        ("X-Api-Token: tok-4711", f"X-Api-Token: {MASK}"),
        ("token: tok-4711", f"token: {MASK}"),
    ],
)
def test_secret_parameters_are_masked_in_urls_json_and_headers(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_secret_parameters_are_masked_in_python_reprs() -> None:
    assert redact(repr({"api_key": "zz9xk1"})) == f"{{'api_key': '{MASK}'}}"


@pytest.mark.parametrize(
    "token",
    [
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "xoxp-1111-2222-3333-abcdef",
        "xoxa-2-abc",
        "xapp-1-A0123BCDE-4567890123-abcdef0123456789",
        "xwfp-7654321-1234567890-abcdef0123456789",  # a workflow step's bot_access_token
    ],
)
def test_slack_tokens_are_masked(token: str) -> None:
    assert redact(f"token was {token}.") == f"token was {MASK}."


def test_ordinary_text_is_left_alone() -> None:
    for text in ("", "Sequence *2027* created (id 104).", "password reset for 1001", "tokens"):
        assert redact(text) == text


def test_redact_any_walks_json_like_data() -> None:
    secret = fresh()
    register_secret(secret)
    data = {"a": [secret, {"b": f"x {secret}"}], "n": 5, "t": (secret,), "none": None}
    assert redact_any(data) == {"a": [MASK, {"b": f"x {MASK}"}], "n": 5, "t": [MASK], "none": None}


# --- logging -----------------------------------------------------------------------------------


@pytest.fixture
def fresh_redaction(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Redaction installed as a new process installs it, over logging's own record factory
    (the process's factory is put back afterwards)."""
    previous = logging.getLogRecordFactory()
    monkeypatch.setattr(secrets, "_installed", False)
    logging.setLogRecordFactory(logging.LogRecord)
    try:
        install_log_redaction()
        installed = logging.getLogRecordFactory()
        assert installed is not logging.LogRecord
        install_log_redaction()  # idempotent: a second call does not wrap the factory twice
        assert logging.getLogRecordFactory() is installed
        yield
    finally:
        logging.setLogRecordFactory(previous)


@pytest.fixture
def log(fresh_redaction: None, caplog: pytest.LogCaptureFixture) -> Iterator[logging.Logger]:
    logger = logging.getLogger("tests.secrets")
    caplog.set_level(logging.DEBUG, logger=logger.name)
    yield logger


@pytest.fixture
def stream(log: logging.Logger) -> Iterator[io.StringIO]:
    """What an ordinary StreamHandler (a terminal, a log shipper) would print."""
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    log.addHandler(handler)
    try:
        yield output
    finally:
        log.removeHandler(handler)


def test_a_secret_in_the_message_is_masked(
    log: logging.Logger, caplog: pytest.LogCaptureFixture, stream: io.StringIO
) -> None:
    secret = fresh()
    register_secret(secret)
    log.warning(f"calling with {secret}")
    assert f"calling with {MASK}" in caplog.text
    assert f"calling with {MASK}" in stream.getvalue()
    assert secret not in caplog.text + stream.getvalue()


def test_a_secret_in_the_arguments_is_masked(
    log: logging.Logger, caplog: pytest.LogCaptureFixture, stream: io.StringIO
) -> None:
    secret = fresh()
    register_secret(secret)
    log.info("calling %s with %r", "/x", {"key": secret})
    [record] = caplog.records
    assert record.args is None
    assert record.getMessage() == f"calling /x with {{'key': '{MASK}'}}"
    assert secret not in caplog.text + stream.getvalue()
    assert MASK in stream.getvalue()


def test_an_unregistered_secret_parameter_in_a_log_line_is_masked(
    log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    value = fresh()
    log.debug("GET https://p.test/a?api_key=%s&page=1", value)
    assert f"api_key={MASK}&page=1" in caplog.text
    assert value not in caplog.text


def test_a_secret_in_an_exception_traceback_is_masked(
    log: logging.Logger, caplog: pytest.LogCaptureFixture, stream: io.StringIO
) -> None:
    secret = fresh()
    register_secret(secret)
    try:
        raise RuntimeError(f"provider refused key {secret}")
    except RuntimeError as exc:
        error = exc
        log.exception("call failed")
    printed = stream.getvalue()
    for text in (caplog.text, printed):
        assert "Traceback (most recent call last)" in text
        assert f"RuntimeError: provider refused key {MASK}" in text
        assert secret not in text
    [record] = caplog.records
    assert record.exc_info is None and record.exc_text is not None
    # Exactly the traceback Python prints, with the secret masked, and nothing after it.
    shown = "".join(traceback.format_exception(error)).rstrip().replace(secret, MASK)
    assert record.exc_text == shown
    assert printed.endswith(f"RuntimeError: provider refused key {MASK}\n")


def test_a_secret_in_a_stack_trace_is_masked(
    log: logging.Logger, caplog: pytest.LogCaptureFixture, stream: io.StringIO
) -> None:
    # A stack shows the source line of each frame, this one's comment included.
    log.warning("retrying", stack_info=True)  # after GET /x.json?api_key=zz9xk1
    [record] = caplog.records
    assert record.stack_info is not None
    assert record.stack_info.startswith("Stack (most recent call last):")
    assert f"# after GET /x.json?api_key={MASK}" in record.stack_info
    assert "zz9xk1" not in record.stack_info + caplog.text + stream.getvalue()


def test_a_chained_exception_is_masked_too(
    log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    secret = fresh()
    register_secret(secret)
    try:
        try:
            raise KeyError(secret)
        except KeyError as inner:
            raise ValueError("lookup failed") from inner
    except ValueError:
        log.error("outer", exc_info=True)
    assert "The above exception was the direct cause" in caplog.text
    assert secret not in caplog.text


def test_a_broken_format_string_keeps_the_record_and_leaks_nothing(
    log: logging.Logger, caplog: pytest.LogCaptureFixture, stream: io.StringIO
) -> None:
    secret = fresh()
    register_secret(secret)
    log.warning("two %s %s", secret)  # one argument short
    [record] = caplog.records
    assert record.getMessage() == "two %s %s"
    assert record.args is None  # nothing left for a later formatting to put back
    assert secret not in caplog.text + stream.getvalue()


def test_the_factory_takes_a_log_record_s_arguments_by_name(fresh_redaction: None) -> None:
    factory = logging.getLogRecordFactory()
    record = factory(
        name="tests.secrets",
        level=logging.INFO,
        pathname=__file__,
        lineno=1,
        msg="GET /x?api_key=%s",
        args=("zz9xk1",),
        exc_info=None,
    )
    assert record.getMessage() == f"GET /x?api_key={MASK}"


@pytest.fixture
def httpx_info(fresh_redaction: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="httpx")


@pytest.mark.usefixtures("httpx_info")
@pytest.mark.parametrize("registered", [True, False])
async def test_httpx_request_log_line_is_masked(
    caplog: pytest.LogCaptureFixture, registered: bool
) -> None:
    secret = fresh()
    if registered:
        register_secret(secret)
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={})

    async with httpx.AsyncClient(
        base_url="https://p.test", transport=httpx.MockTransport(handler)
    ) as client:
        await client.get("/sequences.json", params={"api_key": secret})
    assert seen[0].params["api_key"] == secret  # the key did travel
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines == [
        f'HTTP Request: GET https://p.test/sequences.json?api_key={MASK} "HTTP/1.1 200 OK"'
    ]
    assert secret not in caplog.text
