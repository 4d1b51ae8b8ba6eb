"""VoIPcloud partner-portal API client (balances, funds, customer accounts).

Quirks:
- The key travels in a header named `token`; a 401 also means the caller's IP is not on the
  portal's allow-list.
- Every answer is wrapped as `{"code": 200, "data": {…}}`; a different `code` is an error even
  when the HTTP status is 200.
- The portal documents its billing paths only as screenshots: each path below is a default that
  `VOIPCLOUD_PATH_<NAME>` overrides.
- Writes are form fields sent as multipart/form-data; POST methods also carry `google_captcha`
  when one is configured.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, fields
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from commands import money
from commands.http import (
    OutcomeUnknown,
    ProviderAuthError,
    ProviderHTTP,
    ProviderRejected,
    ProviderUnavailable,
    Sleep,
    new_client,
    status_sentence,
    unreadable_write,
)
from commands.limits import limit_key
from commands.secrets import register_secret
from commands.voipcloud.budget import (
    DEFAULT_RATE_LIMIT,
    Clock,
    RateBudget,
    RateLimit,
    utcnow,
)
from commands.voipcloud.models import LoginLink, Notice, Registration, Statement, Transfer

PROVIDER = "VoIPcloud"

CUSTOMER_BALANCE = "/get-customer-balance"
PARTNER_BALANCE = "/get-partner-balance"
MOVE_FUNDS = "/move-funds"
REGISTER_CUSTOMER = "/register-customer"
CONFIRM_EMAIL = "/confirm-customer-email"
LOGIN_CUSTOMER = "/login-customer"
RESET_PASSWORD = "/reset-customer-password"

TOKEN_HEADER = "token"
CAPTCHA_FIELD = "google_captcha"

AUTH_REFUSED = (
    "wrong key, or this server's IP is not on the portal's allow-list "
    "(check VOIPCLOUD_TOKEN, and the IPs under Integration/API in the partner portal)"
)

M = TypeVar("M", bound=BaseModel)

# A one-time login URL carries its key as a long path segment or query value.
_TOKEN_LIKE = re.compile(r"[\w.~+/=%-]{16,}")


@dataclass(frozen=True)
class Paths:
    """Where each method lives; field `x` is overridden by `VOIPCLOUD_PATH_X`."""

    customer_balance: str = CUSTOMER_BALANCE
    partner_balance: str = PARTNER_BALANCE
    move_funds: str = MOVE_FUNDS
    register_customer: str = REGISTER_CUSTOMER
    confirm_email: str = CONFIRM_EMAIL
    login_customer: str = LOGIN_CUSTOMER
    reset_password: str = RESET_PASSWORD

    @staticmethod
    def names() -> tuple[str, ...]:
        return tuple(f.name for f in fields(Paths))

    @staticmethod
    def variable(name: str) -> str:
        return f"VOIPCLOUD_PATH_{name.upper()}"


class VoipcloudClient:
    def __init__(
        self,
        http: ProviderHTTP,
        *,
        budget: RateBudget,
        paths: Paths = Paths(),
        google_captcha: str | None = None,
    ) -> None:
        self.http = http
        self.budget = budget
        self.paths = paths
        self.google_captcha = google_captcha

    @classmethod
    def open(
        cls,
        *,
        base_url: str,
        token: str,
        google_captcha: str | None = None,
        paths: Paths = Paths(),
        rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = utcnow,
        sleep: Sleep = asyncio.sleep,
    ) -> VoipcloudClient:
        register_secret(token, google_captcha)
        client = new_client(
            base_url=base_url,
            headers={TOKEN_HEADER: token, "Accept": "application/json"},
            transport=transport,
        )
        http = ProviderHTTP(PROVIDER, client, sleep=sleep)
        budget = RateBudget(
            rate_limit,
            provider=PROVIDER,
            key=limit_key(PROVIDER, token),
            clock=clock,
            sleep=sleep,
        )
        return cls(http, budget=budget, paths=paths, google_captcha=google_captcha)

    async def aclose(self) -> None:
        await self.http.aclose()

    # --- reads ---------------------------------------------------------------------------------

    async def customer_balance(
        self, account: str, start: date, end: date, *, wait: bool = False
    ) -> Statement:
        """`wait=True` (reports) waits for the rate budget instead of failing."""
        params = {
            "account_number": account,
            "from_date": start.isoformat(),
            "to_date": end.isoformat(),
        }
        what = f"the balance of customer {account}"
        data = await self._call("GET", "customer_balance", what, params=params, wait=wait)
        return self._model(Statement, data, what)

    async def partner_balance(self, start: date, end: date, *, wait: bool = False) -> Statement:
        params = {"from_date": start.isoformat(), "to_date": end.isoformat()}
        data = await self._call(
            "GET", "partner_balance", "the partner balance", params=params, wait=wait
        )
        return self._model(Statement, data, "the partner balance")

    # --- writes (sent once) ----------------------------------------------------------------------

    async def move_funds(self, account: str, amount: Decimal, description: str) -> Transfer:
        """Positive `amount` moves funds partner → customer; negative, customer → partner."""
        form = {
            "account_number": account,
            # Cents: an amount with more decimals is refused here, never rounded away.
            "amount": money.fixed(amount, 2),
            "description": description,
        }
        what = f"the transfer for customer {account}"
        data = await self._call("PUT", "move_funds", what, form=form)
        return self._model(Transfer, data, what, write=True)

    async def register_customer(
        self,
        *,
        first_name: str,
        last_name: str,
        email: str,
        phone: str,
        company: str | None = None,
    ) -> Registration:
        form = {"first_name": first_name, "last_name": last_name, "email": email, "phone": phone}
        if company:
            form["company"] = company
        what = f"the registration of {email}"
        data = await self._call("POST", "register_customer", what, form=form)
        return self._model(Registration, data, what, write=True)

    async def confirm_email(self, account: str) -> Notice:
        # Confirming an address twice changes nothing, so a lost answer may be asked again.
        data = await self._call(
            "POST",
            "confirm_email",
            "the e-mail confirmation",
            form={"account_number": account},
            idempotent=True,
        )
        return self._model(Notice, data, "the e-mail confirmation")

    async def login_url(self, account: str) -> str:
        """A one-time login URL. It is registered as a secret before anything else sees it."""
        what = f"the login URL request for customer {account}"
        data = await self._call(
            "POST",
            "login_customer",
            what,
            form={"account_number": account},
            secret_answer=True,
        )
        return self._model(LoginLink, data, what, write=True).url

    async def reset_password(self, account: str) -> Notice:
        what = f"the password reset for customer {account}"
        data = await self._call("POST", "reset_password", what, form={"account_number": account})
        return self._model(Notice, data, what, write=True)

    # --- plumbing --------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path_name: str,
        what: str,
        *,
        params: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
        wait: bool = False,
        idempotent: bool | None = None,
        secret_answer: bool = False,
    ) -> dict[str, Any]:
        await self.budget.acquire(wait=wait)
        path = getattr(self.paths, path_name)
        kwargs: dict[str, Any] = {}
        if params is not None:
            kwargs["params"] = params
        if form is not None:
            fields_ = dict(form)
            if method == "POST" and self.google_captcha:
                fields_[CAPTCHA_FIELD] = self.google_captcha
            # `(None, value)` parts make httpx send multipart/form-data without file names.
            kwargs["files"] = {name: (None, value) for name, value in fields_.items()}
        idempotent = method == "GET" if idempotent is None else idempotent
        response = await self.http.send(method, path, idempotent=idempotent, **kwargs)
        return self._data(
            response, path_name, what, write=not idempotent, secret_answer=secret_answer
        )

    def _data(
        self,
        response: httpx.Response,
        path_name: str,
        what: str,
        *,
        write: bool,
        secret_answer: bool = False,
    ) -> dict[str, Any]:
        """The `data` object of an answer. For a write, only a clear refusal (401, 429, another
        4xx, or a non-200 `code` in readable JSON) is an error; anything else that is not the
        documented `{"code": 200, "data": {…}}` is "outcome unknown" (`unreadable_write`)."""
        status = response.status_code
        body = _json(response)
        if secret_answer and isinstance(body, dict):
            _register_urls(body.get("data"))
        code = _code(body)
        if status == 401 or code == 401:
            raise ProviderAuthError(PROVIDER, AUTH_REFUSED, status=401)
        if status == 429 or code == 429:
            raise ProviderUnavailable(PROVIDER, status_sentence(429), status=status)
        if status >= 500:
            # The portal's article documents no server errors, let alone that a write answered
            # with one was not carried out: a 5xx after a move of funds may follow the move, so
            # a write's 5xx is "outcome unknown"; a read's is just unavailable (and retried).
            if write:
                raise unreadable_write(PROVIDER, response, what)
            raise ProviderUnavailable(PROVIDER, status_sentence(status), status=status)
        if write and 300 <= status < 400:
            # Redirects are not followed; one after a write may come after it was done.
            raise unreadable_write(PROVIDER, response, what)
        if not isinstance(body, dict):
            if status == 404:
                raise ProviderRejected(
                    PROVIDER,
                    f"the portal has no {getattr(self.paths, path_name)} "
                    f"(HTTP 404); check {Paths.variable(path_name)}",
                    status=status,
                )
            if write and status < 400:
                raise unreadable_write(PROVIDER, response, what)
            raise ProviderRejected(
                PROVIDER,
                f"{status_sentence(status)} without the expected JSON; check VOIPCLOUD_BASE_URL",
                status=status,
            )
        if status >= 400 or (code is not None and code != 200):
            shown = code if code is not None else status
            detail = error_message(body) or "the portal gave no reason"
            raise ProviderRejected(PROVIDER, f"{detail} (code {shown})", status=status)
        data = body.get("data")
        if data is None:
            return {}
        if not isinstance(data, dict):
            if write:
                raise unreadable_write(PROVIDER, response, what)
            raise ProviderRejected(PROVIDER, "the answer had no data object", status=status)
        return data

    @staticmethod
    def _model(model: type[M], data: dict[str, Any], what: str, *, write: bool = False) -> M:
        try:
            return model.model_validate(data)
        except ValidationError:
            names = ", ".join(sorted(data)) or "nothing"
            if write:
                # Accepted (code 200) but not in the documented shape: it may well have happened.
                raise OutcomeUnknown(
                    PROVIDER,
                    f"{what} was sent and accepted, but the answer came back in an unexpected "
                    f"shape (fields: {names})",
                ) from None
            raise ProviderRejected(
                PROVIDER, f"{what} came back in an unexpected shape (fields: {names})"
            ) from None


def _json(response: httpx.Response) -> Any:
    # Numbers become Decimal as they are read, so no amount ever passes through float.
    try:
        return json.loads(response.content, parse_float=Decimal)
    except ValueError:
        return None


def _code(body: Any) -> int | None:
    if not isinstance(body, dict) or "code" not in body:
        return None
    try:
        return int(str(body["code"]))
    except ValueError:
        return None


def _register_urls(data: Any) -> None:
    """Mask a one-time login URL, and its long parts, wherever it might travel next."""
    if not isinstance(data, dict):
        return
    for value in data.values():
        if not isinstance(value, str) or "://" not in value:
            continue
        register_secret(value)
        parts = urlsplit(value)
        pieces = [*parts.path.split("/"), *parts.query.split("&"), parts.fragment]
        for piece in pieces:
            token = piece.partition("=")[2] or piece
            if _TOKEN_LIKE.fullmatch(token) and re.search(r"\d", token):
                register_secret(token)


def error_message(body: dict[str, Any]) -> str:
    """The portal's own words: `errors` (field → messages) if given, else `message`/`error`."""
    texts: list[str] = []
    errors = body.get("errors")
    if isinstance(errors, dict):
        for value in errors.values():
            texts += [str(v) for v in value] if isinstance(value, list) else [str(value)]
    elif isinstance(errors, list):
        texts += [str(e) for e in errors]
    elif isinstance(errors, str):
        texts.append(errors)
    if not texts:
        for key in ("message", "error"):
            if isinstance(body.get(key), str):
                texts.append(body[key])
                break
    if not texts and isinstance(body.get("data"), dict):
        message = body["data"].get("message")
        if isinstance(message, str):
            texts.append(message)
    return "; ".join(t.strip().rstrip(".") for t in texts if t and t.strip())
