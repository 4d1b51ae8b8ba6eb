"""A faithful fake of the ActivePlatform reseller API endpoints the bot uses.

The token's manager belongs to reseller 1 (230 accounts, so paging and chunking show), which has
one downstream reseller, 2 (4 accounts). Reseller 3 exists but is out of the token's reach (403);
any other reseller is unknown (404). Every request needs `X-Api-Token` (401) and the JSON:API
media type in `Accept` (406) and `Content-Type` (415). Pages follow `page[number]`/`page[size]`
(default size 50, as documented) and `filter[email]` (a comma-separated list). A notification
answers 200 with the body `null`; an empty or malformed `account_ids` (or dates) is the
documented 422 with `errors` as one object, and so are account ids the reseller does not have.

Switches for tests: `paging` picks how a page says more follow (JSON:API `links` with a `meta`
count, the `meta` count alone, or neither, as the reference documents it); `max_page_size`
serves at most that many accounts a page whatever `page[size]` asks (links and counts follow the
size served), as a server with a limit of its own would; `fail_accounts` makes any
notification naming one of those account ids answer with the given status (422 or 5xx), for
partial failures; `lose_answer_for` acts on such a notification and then loses the answer;
`control.echo_secrets` answers every request with a 422 whose title quotes the token it carried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from commands.activeplatform import client as api
from commands.sandbox import ControlMiddleware, SandboxControl
from commands.sandbox_state import number_span

SANDBOX_TOKEN = "sandbox-activeplatform-token"
SANDBOX_BASE_URL = "http://activeplatform.sandbox"
SANDBOX_RESELLER = "1"
DEFAULT_PAGE_SIZE = 50
MISSING = "param is missing or the value is empty: {name}"

_STEMS = ("Acme", "Borealis", "Cobalt", "Delta", "Elm", "Fjord", "Granite", "Harbor", "Iris")
_KINDS = ("Cloud", "Systems", "Trading")


@dataclass
class StoredAccount:
    id: int
    reseller: str
    name: str
    email: str
    status: str = "active"

    def as_resource(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": "accounts",
            "attributes": {
                "reseller_id": int(self.reseller),
                "name": self.name,
                "email": self.email,
                "status": self.status,
            },
        }


@dataclass(frozen=True)
class SentNotification:
    reseller: str
    account_ids: tuple[int, ...]
    start_date: date
    end_date: date


def _generated(reseller: str, first_id: int, count: int) -> list[StoredAccount]:
    accounts = []
    for n in range(count):
        stem, kind = _STEMS[n % len(_STEMS)], _KINDS[n % len(_KINDS)]
        accounts.append(
            StoredAccount(
                id=first_id + n,
                reseller=reseller,
                name=f"{stem} {kind} {n + 1:03d}",
                email=f"billing@{stem.lower()}{n + 1:03d}.example",
                status="suspended" if n % 9 == 8 else "active",
            )
        )
    return accounts


def _error(title: str, status: int) -> JSONResponse:
    return JSONResponse(
        {"errors": {"title": title, "status": str(status)}},
        status_code=status,
        media_type=api.MEDIA_TYPE,
    )


@dataclass
class ActivePlatformSandbox:
    persisted: ClassVar[tuple[str, ...]] = ("accounts", "notifications")

    token: str = SANDBOX_TOKEN
    control: SandboxControl = field(default_factory=SandboxControl)
    accounts: dict[str, list[StoredAccount]] = field(default_factory=dict)
    manager_reseller: str = SANDBOX_RESELLER
    downstream: dict[str, set[str]] = field(default_factory=lambda: {"1": {"2"}})
    forbidden: set[str] = field(default_factory=lambda: {"3"})
    paging: Literal["links", "meta", "bare"] = "links"
    max_page_size: int | None = None
    fail_accounts: dict[int, int] = field(default_factory=dict)
    lose_answer_for: set[int] = field(default_factory=set)
    notifications: list[SentNotification] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.accounts:
            self.accounts = {
                "1": _generated("1", 2003001, 230),
                "2": _generated("2", 2005001, 4),
                "3": _generated("3", 2007001, 2),
            }

    def samples(self) -> list[tuple[str, str]]:
        reachable = sorted(self.below(self.manager_reseller) & set(self.accounts))
        mine = self.manager_reseller
        resellers = [
            f"{r} ({len(self.accounts[r])} accounts{', yours' if r == mine else ''})"
            for r in reachable
        ]
        accounts = [
            f"{number_span([a.id for a in self.accounts[r]])} (reseller {r})" for r in reachable
        ]
        return [("resellers", ", ".join(resellers)), ("accounts", ", ".join(accounts))]

    def app(self) -> Any:
        routes = [
            Route(api.ACCOUNTS.format(reseller="{reseller}"), self.list_accounts, methods=["GET"]),
            Route(
                api.NOTIFY_CLOSING.format(reseller="{reseller}"),
                self.notify_closing,
                methods=["POST"],
            ),
        ]
        return ControlMiddleware(Starlette(routes=routes), self.control, echo=self.echo_secrets)

    async def echo_secrets(self, request: Request) -> Response:
        """A 422 with the token bare in its title, in no shape a pattern would mask."""
        sent = request.headers.get("x-api-token", "")
        return _error(f"manager {sent} may not use this installation", 422)

    # --- access ------------------------------------------------------------------------------

    def below(self, reseller: str) -> set[str]:
        """The reseller and every reseller downstream of it."""
        seen: set[str] = set()
        todo = [reseller]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo += self.downstream.get(current, set())
        return seen

    def _refused(self, request: Request) -> Response | None:
        if request.headers.get("x-api-token") != self.token:
            return _error("Unauthorized", 401)
        if api.MEDIA_TYPE not in request.headers.get("accept", ""):
            return _error(f"Accept must be {api.MEDIA_TYPE}", 406)
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != api.MEDIA_TYPE:
            return _error(f"Content-Type must be {api.MEDIA_TYPE}", 415)
        reseller = request.path_params["reseller"]
        if not reseller.isdigit() or (
            reseller not in self.accounts and reseller not in self.forbidden
        ):
            return _error("Record not found", 404)
        if reseller not in self.below(self.manager_reseller):
            return _error("Access denied", 403)
        return None

    # --- GET …/accounts ----------------------------------------------------------------------

    async def list_accounts(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        reseller = request.path_params["reseller"]
        query = request.query_params
        try:
            number = int(query.get("page[number]", "1"))
            size = int(query.get("page[size]", str(DEFAULT_PAGE_SIZE)))
        except ValueError:
            number = size = 0
        if number < 1 or size < 1:
            return _error("page[number] and page[size] must be positive numbers", 422)
        if self.max_page_size is not None:
            size = min(size, self.max_page_size)
        rows = self.accounts[reseller]
        if emails := query.get("filter[email]"):
            wanted = {e.strip().lower() for e in emails.split(",") if e.strip()}
            rows = [a for a in rows if a.email.lower() in wanted]
        page = rows[(number - 1) * size : number * size]
        body: dict[str, Any] = {"data": [a.as_resource() for a in page]}
        last = max(1, -(-len(rows) // size))
        if self.paging == "links":
            body["links"] = self._links(request, number, size, last)
        if self.paging in ("links", "meta"):
            body["meta"] = {"total_count": len(rows)}
        return JSONResponse(body, media_type=api.MEDIA_TYPE)

    def _links(self, request: Request, number: int, size: int, last: int) -> dict[str, Any]:
        def at(n: int) -> str:
            params = {k: v for k, v in request.query_params.items() if not k.startswith("page[")}
            params.update({"page[number]": str(n), "page[size]": str(size)})
            return f"{request.url.path}?{urlencode(params)}"

        return {
            "self": at(number),
            "first": at(1),
            "last": at(last),
            "prev": at(number - 1) if number > 1 else None,
            "next": at(number + 1) if number < last else None,
        }

    # --- POST …/notifications/external_invoices ----------------------------------------------

    async def notify_closing(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        reseller = request.path_params["reseller"]
        try:
            payload = await request.json()
        except ValueError:
            return _error(MISSING.format(name="account_ids"), 422)
        if not isinstance(payload, dict):
            return _error(MISSING.format(name="account_ids"), 422)
        ids = payload.get("account_ids")
        if not ids:
            return _error(MISSING.format(name="account_ids"), 422)
        if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids
        ):
            return _error("account_ids has an incorrect format", 422)
        dates: dict[str, date] = {}
        for name in ("start_date", "end_date"):
            raw = payload.get(name)
            if not raw:
                return _error(MISSING.format(name=name), 422)
            try:
                dates[name] = date.fromisoformat(str(raw))
            except ValueError:
                return _error(f"{name} has an incorrect format", 422)
        if dates["end_date"] < dates["start_date"]:
            return _error("end_date must not be before start_date", 422)
        known = {a.id for r in self.below(reseller) for a in self.accounts.get(r, [])}
        unknown = [i for i in ids if i not in known]
        if unknown:
            return _error(f"accounts not found: {', '.join(map(str, unknown))}", 422)
        for account_id in ids:
            if account_id in self.fail_accounts:
                status = self.fail_accounts[account_id]
                if status == 422:
                    return _error(f"account {account_id} could not be notified", 422)
                return Response(status_code=status)
        self.notifications.append(
            SentNotification(reseller, tuple(ids), dates["start_date"], dates["end_date"])
        )
        if any(i in self.lose_answer_for for i in ids):
            raise httpx.ReadError("connection lost before the answer")
        # The documented success: 200 with the JSON body `null`.
        return Response(b"null", status_code=200, media_type=api.MEDIA_TYPE)
