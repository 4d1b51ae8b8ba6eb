"""A faithful fake of the VoIPcloud partner-portal API methods the bot uses.

Behaves as the portal's article says: the key goes in a `token` header and a wrong key (or a
caller IP missing from the allow-list, see `ip_allowed`) gets 401; answers are
`{"code": 200, "data": {…}}` with amounts as JSON numbers (balances to five decimals, credit
limits that may be negative); validation failures come back with HTTP 200 and a non-200 `code`;
writes take form fields (multipart or urlencoded), and POST methods check `google_captcha` when
one is configured.

Statements follow the article's example: adjustments count as charges, so
`total_charges = adjustments + call_charges + other_charges` and
`closing_balance = opening_balance + payments - total_charges`. A move of funds is recorded as a
payment to the customer and the opposite payment on the partner account.

Customers are numbered from 10023: the three below, then (up to `population`) generated ones
with repeatable made-up ledgers, so the console can run a 200-account report (10023..10222).
With `control.echo_secrets`, every request gets a refusal quoting the key it carried, and the
`google_captcha` when it carried one.
"""

from __future__ import annotations

import json
import random
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from commands.sandbox import ControlMiddleware, SandboxControl
from commands.sandbox_state import number_span
from commands.voipcloud import client as api

SANDBOX_TOKEN = "sandbox-voipcloud-token"
SANDBOX_GOOGLE_CAPTCHA = "sandbox-google-captcha-response"
SANDBOX_BASE_URL = "http://voipcloud.sandbox"
DESCRIPTION_LIMIT = 255
FIRST_ACCOUNT = 10023
# The console's sandbox: customers 10023..10222, enough for a 200-account balance report.
CONSOLE_POPULATION = 200

Kind = Literal["payments", "adjustments", "call_charges", "other_charges"]
KINDS: tuple[Kind, ...] = ("payments", "adjustments", "call_charges", "other_charges")

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
AMOUNT = re.compile(r"^-?\d+(\.\d{1,2})?$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


FIRST_NAMES = ("Ava", "Liam", "Noah", "Mia", "Zoe", "Ravi", "Sofia", "Kenji", "Amara", "Lucas")
LAST_NAMES = ("Smith", "Tran", "Patel", "Garcia", "Kowalski", "Okafor", "Silva", "Chen", "Brown")


def _utc_today() -> date:
    return datetime.now(UTC).date()


@dataclass
class Entry:
    day: date
    kind: Kind
    amount: Decimal
    description: str = ""

    @property
    def effect(self) -> Decimal:
        return self.amount if self.kind == "payments" else -self.amount


@dataclass
class Ledger:
    """An account's history from `start`, when its balance was `base`."""

    start: date
    base: Decimal
    entries: list[Entry] = field(default_factory=list)

    def balance(self, *, before: date | None = None) -> Decimal:
        return self.base + sum(
            (e.effect for e in self.entries if before is None or e.day < before), Decimal(0)
        )

    def statement(self, first: date, last: date) -> dict[str, Decimal]:
        inside = [e for e in self.entries if first <= e.day <= last]
        sums = {k: sum((e.amount for e in inside if e.kind == k), Decimal(0)) for k in KINDS}
        opening = self.balance(before=first)
        total = sums["adjustments"] + sums["call_charges"] + sums["other_charges"]
        return {
            "opening_balance": opening,
            "payments": sums["payments"],
            "adjustments": sums["adjustments"],
            "call_charges": sums["call_charges"],
            "other_charges": sums["other_charges"],
            "total_charges": total,
            "closing_balance": opening + sums["payments"] - total,
        }


@dataclass
class Customer:
    account_number: str
    first_name: str
    last_name: str
    email: str
    phone: str
    credit_limit: Decimal
    ledger: Ledger
    company: str | None = None
    email_confirmed: bool = True
    password_resets: int = 0


@dataclass
class VoipcloudSandbox:
    persisted: ClassVar[tuple[str, ...]] = ("customers", "partner", "next_account")

    token: str = SANDBOX_TOKEN
    google_captcha: str | None = SANDBOX_GOOGLE_CAPTCHA
    today: Callable[[], date] = _utc_today
    ip_allowed: bool = True  # False: every call gets 401, as from an IP not on the allow-list
    control: SandboxControl = field(default_factory=SandboxControl)
    customers: dict[str, Customer] = field(default_factory=dict)
    partner: Ledger = field(default_factory=lambda: Ledger(date.min, Decimal(0)))
    login_keys: dict[str, str] = field(default_factory=dict)  # one-time key → account
    # Customers numbered from 10023: the three documented ones, then generated ones.
    population: int = 3
    next_account: int = 10026

    def __post_init__(self) -> None:
        if not self.customers:
            self._seed()
            self._generate()

    def _seed(self) -> None:
        """Three customers and a partner account, with history in this month and the last."""
        this_month = self.today().replace(day=1)
        last_month = (this_month - timedelta(days=1)).replace(day=1)

        def day(first: date, n: int) -> date:
            return first + timedelta(days=n - 1)

        def d(text: str) -> Decimal:
            return Decimal(text)

        # 10023 reproduces the article's example for this month.
        self.customers["10023"] = Customer(
            "10023", "Jane", "Citizen", "jane@example.com.au", "+61412345678", d("-55"),
            Ledger(last_month, d("180.00000"), [
                Entry(day(last_month, 3), "payments", d("100")),
                Entry(day(last_month, 20), "call_charges", d("30.12345")),
                Entry(day(last_month, 28), "other_charges", d("4.16362")),
                Entry(day(this_month, 1), "payments", d("57")),
                Entry(day(this_month, 1), "adjustments", d("5")),
                Entry(day(this_month, 1), "call_charges", d("48.125")),
                Entry(day(this_month, 1), "other_charges", d("7.5")),
            ]),
        )  # fmt: skip
        self.customers["10024"] = Customer(
            "10024", "Bob", "Nguyen", "accounts@harbourcafe.example", "+61298765432", d("-100"),
            Ledger(last_month, d("12.50000"), [
                Entry(day(last_month, 15), "call_charges", d("22.31457")),
                Entry(day(this_month, 1), "call_charges", d("3.90871")),
            ]),
            company="Harbour Cafe Pty Ltd",
        )  # fmt: skip
        self.customers["10025"] = Customer(
            "10025", "Mia", "Rossi", "mia.rossi@example.net", "+393471234567", d("0"),
            Ledger(this_month, d("0.00000")),
            email_confirmed=False,
        )  # fmt: skip
        self.partner = Ledger(last_month, d("4821.36719"), [
            Entry(day(last_month, 5), "payments", d("1200")),
            Entry(day(last_month, 12), "other_charges", d("149.99999")),
            Entry(day(this_month, 1), "other_charges", d("89.90000")),
        ])  # fmt: skip

    def _generate(self) -> None:
        """Customers 10026 onwards, up to `population` in all."""
        today = self.today()
        for number in range(FIRST_ACCOUNT + len(self.customers), FIRST_ACCOUNT + self.population):
            self.customers[str(number)] = _generated_customer(number, today)
        self.next_account = max(self.next_account, FIRST_ACCOUNT + len(self.customers))

    def samples(self) -> list[tuple[str, str]]:
        numbers = [int(n) for n in self.customers]
        named = [
            f"{c.account_number} {c.first_name} {c.last_name}" for c in self.customers.values()
        ]
        return [("customer accounts", f"{number_span(numbers)} (e.g. {', '.join(named[:3])})")]

    def app(self) -> Any:
        routes = [
            Route(api.CUSTOMER_BALANCE, self.customer_balance, methods=["GET"]),
            Route(api.PARTNER_BALANCE, self.partner_balance, methods=["GET"]),
            Route(api.MOVE_FUNDS, self.move_funds, methods=["PUT"]),
            Route(api.REGISTER_CUSTOMER, self.register_customer, methods=["POST"]),
            Route(api.CONFIRM_EMAIL, self.confirm_email, methods=["POST"]),
            Route(api.LOGIN_CUSTOMER, self.login_customer, methods=["POST"]),
            Route(api.RESET_PASSWORD, self.reset_password, methods=["POST"]),
            Route("/customer-login/{key}", self.customer_login, methods=["GET"]),
        ]
        app = Starlette(routes=routes, exception_handlers={Refused: _refused})
        return ControlMiddleware(app, self.control, echo=self.echo_secrets)

    async def echo_secrets(self, request: Request) -> Response:
        """A refusal with the secrets bare in its message, in no `token:` shape a pattern masks."""
        said = f"the key {request.headers.get('token', '')} is not a partner key here"
        if request.method != "GET":
            captcha = (await _form(request)).get("google_captcha")
            if captcha:
                said += f", and {captcha} failed the captcha check"
        return fail(403, said)

    # --- reads -----------------------------------------------------------------------------------

    async def customer_balance(self, request: Request) -> Response:
        self._authorise(request)
        customer = self._customer(request.query_params)
        return ok(customer.ledger.statement(*_period(request.query_params)))

    async def partner_balance(self, request: Request) -> Response:
        self._authorise(request)
        return ok(self.partner.statement(*_period(request.query_params)))

    # --- writes ----------------------------------------------------------------------------------

    async def move_funds(self, request: Request) -> Response:
        self._authorise(request)
        form = await _form(request)
        customer = self._customer(form)
        amount_text = form.get("amount", "").strip()
        description = form.get("description", "").strip()
        errors: dict[str, list[str]] = {}
        amount = Decimal(0)
        if not amount_text:
            errors["amount"] = ["The amount field is required."]
        elif not AMOUNT.match(amount_text):
            errors["amount"] = ["The amount must be a number with at most 2 decimal places."]
        elif (amount := Decimal(amount_text)) == 0:
            errors["amount"] = ["The amount must not be zero."]
        if not description:
            errors["description"] = ["The description field is required."]
        elif len(description) > DESCRIPTION_LIMIT:
            errors["description"] = [
                f"The description may not be greater than {DESCRIPTION_LIMIT} characters."
            ]
        if errors:
            raise Refused(invalid(errors))
        if amount > 0 and self.partner.balance() < amount:
            raise Refused(fail(422, "Insufficient partner balance."))
        if amount < 0 and customer.ledger.balance() + amount < customer.credit_limit:
            raise Refused(fail(422, "Insufficient customer balance."))
        today = self.today()
        customer.ledger.entries.append(Entry(today, "payments", amount, description))
        self.partner.entries.append(Entry(today, "payments", -amount, description))
        return ok(
            {
                "customer_balance": customer.ledger.balance(),
                "customer_credit_limit": customer.credit_limit,
            }
        )

    async def register_customer(self, request: Request) -> Response:
        self._authorise(request)
        form = await self._post_form(request)
        values = {k: form.get(k, "").strip() for k in ("first_name", "last_name", "email", "phone")}
        errors: dict[str, list[str]] = {
            name: [f"The {name.replace('_', ' ')} field is required."]
            for name, value in values.items()
            if not value
        }
        if values["email"] and not EMAIL.match(values["email"]):
            errors["email"] = ["The email must be a valid email address."]
        elif any(c.email.lower() == values["email"].lower() for c in self.customers.values()):
            errors["email"] = ["The email has already been taken."]
        if values["phone"] and not PHONE.match(values["phone"]):
            errors["phone"] = ["The phone must be in international format."]
        if errors:
            raise Refused(invalid(errors))
        number = str(self.next_account)
        self.next_account += 1
        self.customers[number] = Customer(
            number,
            values["first_name"],
            values["last_name"],
            values["email"],
            values["phone"],
            Decimal(0),
            Ledger(self.today(), Decimal("0.00000")),
            company=form.get("company", "").strip() or None,
            email_confirmed=False,
        )
        return ok(
            {
                "account_number": int(number),
                "message": "Customer registered. A confirmation e-mail was sent.",
            }
        )

    async def confirm_email(self, request: Request) -> Response:
        customer = await self._post_for_customer(request)
        already = customer.email_confirmed
        customer.email_confirmed = True
        return ok(
            {"message": "E-mail already confirmed." if already else "Customer e-mail confirmed."}
        )

    async def login_customer(self, request: Request) -> Response:
        customer = await self._post_for_customer(request)
        key = secrets.token_hex(20)
        self.login_keys[key] = customer.account_number
        return ok({"url": f"{str(request.base_url).rstrip('/')}/customer-login/{key}"})

    async def reset_password(self, request: Request) -> Response:
        customer = await self._post_for_customer(request)
        customer.password_resets += 1
        return ok({"message": "A password reset e-mail was sent to the customer."})

    async def customer_login(self, request: Request) -> Response:
        """The page a login URL opens: it works once."""
        account = self.login_keys.pop(request.path_params["key"], None)
        if account is None:
            return PlainTextResponse("This login link has expired.", status_code=410)
        return PlainTextResponse(f"Logged in to the portal as customer {account}.")

    # --- checks: each raises `Refused` with the portal's answer ----------------------------------

    def _authorise(self, request: Request) -> None:
        if not self.ip_allowed or request.headers.get("token") != self.token:
            raise Refused(_json({"code": 401, "message": "Not authorised"}, status_code=401))

    async def _post_form(self, request: Request) -> dict[str, str]:
        form = await _form(request)
        if self.google_captcha and form.get("google_captcha") != self.google_captcha:
            raise Refused(invalid({"google_captcha": ["The google captcha verification failed."]}))
        return form

    def _customer(self, values: Mapping[str, str]) -> Customer:
        number = values.get("account_number", "").strip()
        if not number:
            raise Refused(invalid({"account_number": ["The account number field is required."]}))
        customer = self.customers.get(number)
        if customer is None:
            raise Refused(fail(404, "Customer not found."))
        return customer

    async def _post_for_customer(self, request: Request) -> Customer:
        self._authorise(request)
        return self._customer(await self._post_form(request))


def _generated_customer(number: int, today: date) -> Customer:
    """A made-up customer, the same every time for the same number: last month's payments and
    charges, this month's charges so far, some closing in the red."""
    rng = random.Random(number)
    this_month = today.replace(day=1)
    last_month = (this_month - timedelta(days=1)).replace(day=1)

    def amount(low: int, high: int) -> Decimal:
        return Decimal(rng.randint(low * 100_000, high * 100_000)).scaleb(-5)

    def day(first: date) -> date:
        return min(first + timedelta(days=rng.randint(0, 27)), today)

    entries = [
        Entry(day(last_month), "call_charges", amount(0, 300)),
        Entry(day(last_month), "other_charges", amount(0, 40)),
        Entry(day(this_month), "call_charges", amount(0, 250)),
    ]
    if rng.random() < 0.7:
        entries.append(Entry(day(last_month), "payments", amount(20, 900)))
    if rng.random() < 0.3:
        entries.append(Entry(day(this_month), "payments", amount(20, 600)))
    if rng.random() < 0.1:
        entries.append(Entry(day(this_month), "adjustments", amount(1, 30)))
    given, family = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    return Customer(
        str(number),
        given,
        family,
        f"{given.lower()}.{family.lower()}.{number}@example.com",
        f"+6140{number:07d}",
        Decimal(rng.choice((0, -50, -100, -250))),
        Ledger(last_month, amount(-40, 1500), entries),
    )


class Refused(Exception):
    """Ends a request early with the portal's refusal."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    return exc.response


# --- answers -------------------------------------------------------------------------------------


def ok(data: Mapping[str, Any]) -> Response:
    return _json({"code": 200, "data": dict(data)})


def fail(code: int, message: str) -> Response:
    # The portal reports refusals in the body and keeps HTTP 200.
    return _json({"code": code, "message": message})


def invalid(errors: Mapping[str, list[str]]) -> Response:
    return _json({"code": 422, "message": "The given data was invalid.", "errors": dict(errors)})


def _json(body: Any, status_code: int = 200) -> Response:
    return Response(render(body), status_code=status_code, media_type="application/json")


def render(value: Any) -> str:
    """JSON with Decimals written as plain numbers, exactly as stored (no float on the way)."""
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text in {"-0", "0"} else text
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{render(str(k))}:{render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(render(v) for v in value) + "]"
    if value is None or isinstance(value, bool | int | str):
        return json.dumps(value)
    raise TypeError(f"cannot render {type(value).__name__}")


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _period(values: Mapping[str, str]) -> tuple[date, date]:
    errors: dict[str, list[str]] = {}
    days: dict[str, date] = {}
    for name in ("from_date", "to_date"):
        raw = values.get(name, "").strip()
        label = name.replace("_", " ")
        if not raw:
            errors[name] = [f"The {label} field is required."]
            continue
        try:
            if not ISO_DATE.match(raw):
                raise ValueError(raw)
            days[name] = date.fromisoformat(raw)
        except ValueError:
            errors[name] = [f"The {label} does not match the format Y-m-d."]
    if not errors and days["to_date"] < days["from_date"]:
        errors["to_date"] = ["The to date must be a date after or equal to from date."]
    if errors:
        raise Refused(invalid(errors))
    return days["from_date"], days["to_date"]
