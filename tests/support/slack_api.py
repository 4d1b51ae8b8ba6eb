"""A loopback double of the Slack Web API: the methods the bot calls, as Slack answers them.

    async with serve_slack_double() as slack:       # SLACK_API_URL = slack.url
        client = AsyncWebClient(base_url=slack.url, token=BOT_TOKEN)
        await client.chat_postMessage(channel="C1", text="hi")
        [call] = await slack.wait_for("chat.postMessage")

Requests are read as Slack reads them: arguments from the query string, a form-encoded body or a
JSON body (JSON-valued form fields such as `blocks` and `view` decoded), the token from
`Authorization: Bearer …` or, except with JSON bodies, a `token` argument. Answers are HTTP 200
with `{"ok": true, …}` or `{"ok": false, "error": "…"}` (429 with `Retry-After` for
`ratelimited`). Every request is recorded in `calls`, refused ones included.

The double also serves what surrounds the Web API: the upload URLs `files.getUploadURLExternal`
hands out (the bytes POSTed there are recorded exactly), and `response_url(name)` endpoints whose
POSTs are recorded as calls to the method `response_url`; like Slack's, each answers 5 times.

Message metadata (https://api.slack.com/metadata/using) is read as Slack reads it: an object
with a text `event_type` and an object `event_payload`, else `invalid_metadata_format`. A
message keeps the metadata its post or a later update set (`message(...)["metadata"]`), and
`metadata_of(channel, ts)` lists what each post and update of it carried, in order.
`conversations.history` reads a channel back, newest first, a page at a time, with each
message's metadata only when `include_all_metadata` asks; `add_message` puts in what a person
or another app posted.

Every Web API answer carries the token's scopes in `x-oauth-scopes`, as Slack's do: the bot
token has `scopes` (by default every scope manifest.yml asks for); `conversations.info` answers
`missing_scope` without `channels:read`.

`chat.getPermalink` answers a message's link as Slack does (`message_not_found` for a ts the
channel never held), so a card's link can be checked in the direct messages that carry it.

`functions.completeSuccess` and `functions.completeError` (https://api.slack.com/methods/
functions.completeSuccess) take the bot token; `completions` lists each accepted one by
`function_execution_id`, and a second completion of the same execution answers
`execution_not_in_running_state`, as does one in `stopped_executions` (a workflow that was
cancelled or timed out). `function_token` is the short-lived token a `function_executed` event
carries; the double refuses it for every method, so a test sees it was never used.

Switches: `not_in_channel` (channels the bot is not a member of), `missing_channels` (channels
that do not exist: `channel_not_found`), `scopes`, `usergroups`, `users`, `channel_names`,
`expired_triggers`, and `fail_next(method, error)` for any other error (`invalid_auth`, say).

Faults, as Slack fails under load: `inject(method, Fault(…), …)` makes the next calls to a Web
API method (or to `response_url`) answer HTTP 429 with `Retry-After`, a 5xx with an HTML body
that is not JSON, or stall before answering; a faulted call does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import mimetypes
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot.slack.check import BOT_SCOPES
from tests.support.blockkit import MESSAGE_BLOCKS, block_problems, view_problems
from tests.support.server import serve_asgi

BOT_TOKEN = "xoxb-test"
APP_TOKEN = "xapp-test"
TEAM_ID = "T0BILLING1"
TEAM_NAME = "Billing Team"
TEAM_DOMAIN = "billing-team"
APP_ID = "A0BILLING1"
BOT_ID = "B0BILLBOT1"
BOT_USER_ID = "U0BILLBOT1"
BOT_NAME = "billing-bot"

# Fields Slack receives as JSON text inside a form-encoded request.
JSON_FIELDS = ("attachments", "blocks", "files", "metadata", "view")
RESPONSE_URL_USES = 5
CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]+$")
USER_ID = re.compile(r"^[UW][A-Z0-9]+$")
POLL = 0.01


@dataclass
class UploadedFile:
    """One file of the three-step upload, filled in as each step arrives."""

    id: str
    filename: str
    length: int
    alt_txt: str | None = None
    snippet_type: str | None = None
    data: bytes | None = None
    title: str | None = None
    channels: list[str] = field(default_factory=list)
    initial_comment: str | None = None
    thread_ts: str | None = None
    completed: bool = False


@dataclass
class Call:
    """One request to the double.

    `method` is the Web API method, or `upload` (bytes POSTed to an upload URL; `body` holds them)
    or `response_url` (`name` says which URL). `encoding` is how the arguments came: `json`,
    `form`, `query` (no body) or `bytes`.
    """

    method: str
    params: dict[str, Any]
    token: str | None
    encoding: str
    body: bytes
    response: dict[str, Any]
    status: int = 200
    files: list[UploadedFile] = field(default_factory=list)
    name: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))


@dataclass
class SlackUser:
    name: str
    real_name: str
    tz: str = "UTC"
    is_bot: bool = False
    deleted: bool = False


class SocketLink(Protocol):
    """What `apps.connections.open` asks for: a Socket Mode double's fresh WebSocket URL."""

    def issue_url(self) -> str: ...


class SlackFailure(Exception):
    def __init__(self, error: str, *messages: str) -> None:
        super().__init__(error)
        self.error = error
        self.messages = messages


@dataclass(frozen=True)
class Fault:
    """How one call fails. `status` 429 answers `ratelimited` with `Retry-After`; 500, 502 or
    503 answer an HTML page; 0 fails nothing. `stall` seconds pass before the answer (a stalled
    call: with `status` 0 the call then acts and answers, long after the caller gave up)."""

    status: int = 429
    retry_after: int = 1
    stall: float = 0.0


@dataclass
class SlackApiDouble:
    bot_token: str = BOT_TOKEN
    app_token: str = APP_TOKEN
    # Where the double is reachable; `serve_slack_double` sets the real loopback address.
    base_url: str = "http://slack.test"
    not_in_channel: set[str] = field(default_factory=set)
    missing_channels: set[str] = field(default_factory=set)
    scopes: set[str] = field(default_factory=lambda: set(BOT_SCOPES))
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    users: dict[str, SlackUser] = field(default_factory=dict)
    channel_names: dict[str, str] = field(default_factory=dict)
    expired_triggers: set[str] = field(default_factory=set)
    socket_mode: SocketLink | None = None
    function_token: str = "xwfp-test-function-token"
    stopped_executions: set[str] = field(default_factory=set)
    completions: dict[str, dict[str, Any]] = field(default_factory=dict)

    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    ephemerals: list[dict[str, Any]] = field(default_factory=list)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    home_views: dict[str, str] = field(default_factory=dict)
    uploads: dict[str, UploadedFile] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)
    response_url_uses: dict[str, int] = field(default_factory=dict)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    # (channel, ts) → the metadata of the post and of every update that carried some.
    metadata_sent: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    _serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -----------------------------------------------------------------------------------------
    # What tests use

    @property
    def url(self) -> str:
        """The Web API base URL (ends in `/api/`), for SLACK_API_URL and AsyncWebClient."""
        return f"{self.base_url}/api/"

    def response_url(self, name: str) -> str:
        """A response_url on the double; POSTs to it are recorded as `response_url` calls."""
        return f"{self.base_url}/response/{name}"

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in list(self.calls) if call.method == method]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Wait until `method` was called at least `count` times; return those calls."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(found := self.calls_to(method)) < count:
            if loop.time() > deadline:
                seen = ", ".join(call.method for call in list(self.calls)) or "nothing"
                raise AssertionError(
                    f"expected {count} call(s) to {method} within {timeout} s, "
                    f"got {len(found)}; calls so far: {seen}"
                )
            await asyncio.sleep(POLL)
        return found

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        """The message as it stands now in `channel` (after any chat.update)."""
        return self.messages[(channel, ts)]

    def metadata_of(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The metadata the message's post and each of its updates carried, in order."""
        return list(self.metadata_sent.get((channel, ts), []))

    def shared_files(self) -> list[UploadedFile]:
        return [f for f in self.uploads.values() if f.completed]

    def fail_next(self, method: str, error: str, *, times: int = 1) -> None:
        """Answer the next `times` calls to `method` with `error` (`ratelimited` gives a 429)."""
        self.failures.setdefault(method, []).extend([error] * times)

    def inject(self, method: str, *faults: Fault) -> None:
        """The next calls to `method` (a Web API method or `response_url`) fail as given."""
        self.faults.setdefault(method, []).extend(faults)

    async def _fault(self, method: str, params: dict[str, Any], body: bytes) -> Response | None:
        """Apply the next injected fault for `method`: an answer, or None to go on normally."""
        queue = self.faults.get(method)
        if not queue:
            return None
        fault = queue.pop(0)
        if fault.stall:
            await asyncio.sleep(fault.stall)
        if fault.status == 0:
            return None
        if fault.status == 429:
            answer = {"ok": False, "error": "ratelimited"}
            self.calls.append(Call(method, params, None, "fault", body, answer, 429))
            return JSONResponse(
                answer, status_code=429, headers={"Retry-After": str(fault.retry_after)}
            )
        page = f"<html><body><h1>{fault.status} Server Error</h1></body></html>"
        self.calls.append(Call(method, params, None, "fault", body, {"ok": False}, fault.status))
        return HTMLResponse(page, status_code=fault.status)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/{method}", self._api, methods=["GET", "POST"]),
                Route("/upload/v1/{file_id}", self._upload, methods=["POST"]),
                Route("/response/{name}", self._respond, methods=["POST"]),
            ]
        )

    # -----------------------------------------------------------------------------------------
    # The Web API

    async def _api(self, request: Request) -> Response:
        method = request.path_params["method"]
        body = await request.body()
        params, token, encoding = await _arguments(request, body)
        if (faulted := await self._fault(method, params, body)) is not None:
            return faulted
        status, answer = 200, self._answer(method, params, token)
        if answer.get("error") == "ratelimited":
            status = 429
        call = Call(method, params, token, encoding, body, answer, status)
        if method == "files.completeUploadExternal" and call.ok:
            call.files = [self.uploads[f["id"]] for f in answer["files"]]
        self.calls.append(call)
        headers = {"x-oauth-scopes": ",".join(sorted(self.scopes))} if token else {}
        if status == 429:
            headers["Retry-After"] = "1"
        return JSONResponse(answer, status_code=status, headers=headers)

    def _answer(self, method: str, params: dict[str, Any], token: str | None) -> dict[str, Any]:
        handler = self._handlers().get(method)
        try:
            if handler is None:
                raise SlackFailure("unknown_method")
            self._authorize(method, token)
            if queued := self.failures.get(method):
                raise SlackFailure(queued.pop(0))
            return {"ok": True, **handler(params)}
        except SlackFailure as failure:
            answer: dict[str, Any] = {"ok": False, "error": failure.error}
            if failure.messages:
                answer["response_metadata"] = {"messages": list(failure.messages)}
            return answer

    def _authorize(self, method: str, token: str | None) -> None:
        if not token:
            raise SlackFailure("not_authed")
        if token not in (self.bot_token, self.app_token):
            raise SlackFailure("invalid_auth")
        wants_app_token = method == "apps.connections.open"
        if (token == self.app_token) != wants_app_token:
            raise SlackFailure("not_allowed_token_type")

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "auth.test": self._auth_test,
            "apps.connections.open": self._connections_open,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.getPermalink": self._permalink,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "usergroups.users.list": self._usergroup_users,
            "conversations.info": self._conversation_info,
            "conversations.open": self._conversation_open,
            "conversations.history": self._conversation_history,
            "users.info": self._user_info,
            "files.getUploadURLExternal": self._upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "functions.completeSuccess": self._complete_success,
            "functions.completeError": self._complete_error,
        }

    def _completing(self, params: dict[str, Any]) -> str:
        execution = str(params.get("function_execution_id") or "")
        if not execution:
            raise SlackFailure("invalid_arguments", "[ERROR] missing function_execution_id")
        if execution in self.completions or execution in self.stopped_executions:
            raise SlackFailure("execution_not_in_running_state")
        return execution

    def _complete_success(self, params: dict[str, Any]) -> dict[str, Any]:
        execution = self._completing(params)
        outputs = params.get("outputs")
        if isinstance(outputs, str):
            outputs = json.loads(outputs)
        if not isinstance(outputs, dict):
            raise SlackFailure("invalid_arguments", "[ERROR] outputs must be an object")
        self.completions[execution] = {"outputs": outputs}
        return {}

    def _complete_error(self, params: dict[str, Any]) -> dict[str, Any]:
        execution = self._completing(params)
        if not params.get("error"):
            raise SlackFailure("invalid_arguments", "[ERROR] missing error")
        self.completions[execution] = {"error": str(params["error"])}
        return {}

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": TEAM_NAME,
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.socket_mode is None:
            raise SlackFailure("internal_error", "[ERROR] no Socket Mode double is attached")
        return {"url": self.socket_mode.issue_url()}

    def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        if channel in self.not_in_channel:
            raise SlackFailure("not_in_channel")
        message = self._message_content(params)
        if "blocks" in message:
            message["blocks"] = self._named(message["blocks"])
        ts = self._ts()
        message.update({"ts": ts, "user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID})
        message["team"] = TEAM_ID
        if thread_ts := params.get("thread_ts"):
            message["thread_ts"] = str(thread_ts)
        self.messages[(channel, ts)] = message
        self._record_metadata(channel, ts, message)
        return {"channel": channel, "ts": ts, "message": dict(message)}

    def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        ts = str(params.get("ts") or "")
        message = self.messages.get((channel, ts))
        if message is None:
            raise SlackFailure("message_not_found")
        content = self._message_content(params, updating=True)
        for name in ("blocks", "attachments"):
            # Slack keeps what an update leaves out; an empty list removes it.
            if name in content and not content[name]:
                message.pop(name, None)
                del content[name]
        if "blocks" in content:
            content["blocks"] = self._named(content["blocks"])
        message.update(content)
        self._record_metadata(channel, ts, content)
        message["edited"] = {"user": BOT_USER_ID, "ts": self._ts()}
        return {"channel": channel, "ts": ts, "text": message["text"], "message": dict(message)}

    def _post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        user = str(params.get("user") or "")
        if not USER_ID.match(user):
            raise SlackFailure("user_not_found")
        if channel in self.not_in_channel:
            raise SlackFailure("not_in_channel")
        message = self._message_content(params)
        ts = self._ts()
        self.ephemerals.append({**message, "channel": channel, "user": user, "ts": ts})
        return {"message_ts": ts}

    def _permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        ts = str(params.get("message_ts") or "")
        if (channel, ts) not in self.messages:
            raise SlackFailure("message_not_found")
        link = f"https://{TEAM_DOMAIN}.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        return {"channel": channel, "permalink": link}

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        trigger = params.get("trigger_id")
        if not trigger:
            raise SlackFailure("invalid_arguments", "[ERROR] missing required field: trigger_id")
        if trigger in self.expired_triggers:
            raise SlackFailure("expired_trigger_id")
        view = self._view_argument(params)
        if view.get("type") != "modal":
            raise SlackFailure("invalid_arguments", "[ERROR] must be a modal [json-pointer:/view]")
        return {"view": self._store_view(self._view_id(), view)}

    def _views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        view_id = params.get("view_id")
        if not view_id and (external := params.get("external_id")):
            view_id = next(
                (v["id"] for v in self.views.values() if v.get("external_id") == external), None
            )
        current = self.views.get(str(view_id or ""))
        if current is None:
            raise SlackFailure("not_found")
        if params.get("hash") and params["hash"] != current["hash"]:
            raise SlackFailure("hash_conflict")
        view = self._view_argument(params)
        stored = self._store_view(current["id"], view)
        stored["root_view_id"] = current["root_view_id"]
        return {"view": stored}

    def _views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        user = str(params.get("user_id") or "")
        if not USER_ID.match(user):
            raise SlackFailure("invalid_arguments", "[ERROR] missing required field: user_id")
        view = self._view_argument(params)
        if view.get("type") != "home":
            raise SlackFailure("invalid_arguments", "[ERROR] must be a home [json-pointer:/view]")
        view_id = self.home_views.setdefault(user, self._view_id())
        return {"view": self._store_view(view_id, view)}

    def _usergroup_users(self, params: dict[str, Any]) -> dict[str, Any]:
        group = str(params.get("usergroup") or "")
        if group not in self.usergroups:
            raise SlackFailure("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    def _conversation_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel") or "")
        if "channels:read" not in self.scopes:
            raise SlackFailure("missing_scope")
        if not CHANNEL_ID.match(channel) or channel in self.missing_channels:
            raise SlackFailure("channel_not_found")
        is_im = channel.startswith("D")
        info: dict[str, Any] = {
            "id": channel,
            "created": 1700000000,
            "is_channel": channel.startswith("C"),
            "is_group": channel.startswith("G"),
            "is_im": is_im,
            "is_private": not channel.startswith("C"),
            "is_archived": False,
            "is_member": channel not in self.not_in_channel,
            "context_team_id": TEAM_ID,
        }
        if is_im:
            info["user"] = "U" + channel[1:]
        else:
            info["name"] = self.channel_names.get(channel, channel.lower())
            info["topic"] = {"value": "", "creator": "", "last_set": 0}
            info["purpose"] = {"value": "", "creator": "", "last_set": 0}
        return {"channel": info}

    def _conversation_open(self, params: dict[str, Any]) -> dict[str, Any]:
        """The bot's direct message with one user: `{"channel": {"id": "D…"}}` as Slack answers
        (https://api.slack.com/methods/conversations.open); it needs `im:write`."""
        if "im:write" not in self.scopes:
            raise SlackFailure("missing_scope")
        users = [u for u in str(params.get("users") or "").split(",") if u]
        if len(users) != 1 or not USER_ID.match(users[0]):
            raise SlackFailure("user_not_found")
        return {"no_op": True, "already_open": True, "channel": {"id": "D" + users[0][1:]}}

    def _conversation_history(self, params: dict[str, Any]) -> dict[str, Any]:
        """A channel's messages, newest first, `limit` a page (Slack's default 100) and
        `response_metadata.next_cursor` for the next (empty on the last); each message's
        `metadata` only with `include_all_metadata` (https://api.slack.com/methods/
        conversations.history). `channels:history` for a public channel, `groups:history` for a
        private one; `not_in_channel` where the bot is not a member."""
        channel = str(params.get("channel") or "")
        if not CHANNEL_ID.match(channel) or channel in self.missing_channels:
            raise SlackFailure("channel_not_found")
        scope = "channels:history" if channel.startswith("C") else "groups:history"
        if scope not in self.scopes:
            raise SlackFailure("missing_scope")
        if channel in self.not_in_channel:
            raise SlackFailure("not_in_channel")
        newest_first = sorted(
            (m for (c, _), m in self.messages.items() if c == channel),
            key=lambda m: tuple(int(part) for part in str(m["ts"]).split(".")),
            reverse=True,
        )
        start = int(params.get("cursor") or 0)
        limit = int(params.get("limit") or 100)
        page = newest_first[start : start + limit]
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        messages = [{k: v for k, v in m.items() if with_metadata or k != "metadata"} for m in page]
        more = start + limit < len(newest_first)
        return {
            "messages": messages,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def add_message(self, channel: str, message: dict[str, Any]) -> str:
        """A message someone else posted in `channel` (a person: `user`; an app: `bot_id`);
        returns its ts."""
        ts = self._ts()
        self.messages[(channel, ts)] = {"type": "message", "text": "", **message, "ts": ts}
        return ts

    def _user_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = str(params.get("user") or "")
        if not USER_ID.match(user_id):
            raise SlackFailure("user_not_found")
        user = self.users.get(user_id) or SlackUser(user_id.lower(), f"User {user_id}")
        offset = datetime.now(UTC).astimezone(ZoneInfo(user.tz)).utcoffset()
        return {
            "user": {
                "id": user_id,
                "team_id": TEAM_ID,
                "name": user.name,
                "real_name": user.real_name,
                "deleted": user.deleted,
                "is_bot": user.is_bot,
                "tz": user.tz,
                "tz_label": user.tz,
                "tz_offset": int(offset.total_seconds()) if offset else 0,
                "profile": {
                    "real_name": user.real_name,
                    "display_name": user.name,
                    "team": TEAM_ID,
                },
            }
        }

    def _upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        filename = params.get("filename")
        if not filename:
            raise SlackFailure("invalid_arguments", "[ERROR] missing required field: filename")
        try:
            length = int(params.get("length", ""))
        except (TypeError, ValueError):
            raise SlackFailure(
                "invalid_arguments", "[ERROR] missing required field: length"
            ) from None
        file_id = f"F{next(self._serial):09d}"
        self.uploads[file_id] = UploadedFile(
            id=file_id,
            filename=str(filename),
            length=length,
            alt_txt=params.get("alt_txt"),
            snippet_type=params.get("snippet_type"),
        )
        return {"upload_url": f"{self.base_url}/upload/v1/{file_id}", "file_id": file_id}

    def _complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        items = params.get("files")
        if not isinstance(items, list) or not items:
            raise SlackFailure("invalid_arguments", "[ERROR] missing required field: files")
        files: list[UploadedFile] = []
        for item in items:
            found = self.uploads.get(str(item.get("id"))) if isinstance(item, dict) else None
            if found is None or found.data is None or found.completed:
                raise SlackFailure("file_not_found")
            files.append(found)
        channels = [c for c in str(params.get("channels") or "").split(",") if c]
        if params.get("channel_id"):
            channels.insert(0, str(params["channel_id"]))
        if params.get("thread_ts") and len(channels) != 1:
            raise SlackFailure("invalid_arguments", "[ERROR] thread_ts needs exactly one channel")
        for channel in channels:
            if not CHANNEL_ID.match(channel):
                raise SlackFailure("channel_not_found")
            if channel in self.not_in_channel:
                raise SlackFailure("not_in_channel")
        for item, found in zip(items, files, strict=True):
            found.title = str(item.get("title") or found.filename)
            found.channels = channels
            found.initial_comment = params.get("initial_comment")
            found.thread_ts = params.get("thread_ts")
            found.completed = True
        return {"files": [_file_object(f) for f in files]}

    # -----------------------------------------------------------------------------------------
    # Beyond the Web API: upload URLs and response URLs

    async def _upload(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]
        body = await request.body()
        data = body
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form()
            parts = [v for v in form.values() if isinstance(v, UploadFile)]
            data = await parts[0].read() if parts else b""
            await form.close()
        upload = self.uploads.get(file_id)
        status = 200 if upload is not None and upload.data is None else 404
        if upload is not None and status == 200:
            upload.data = data
        text = f"OK - {len(data)}" if status == 200 else "unknown or used upload URL"
        self.calls.append(
            Call(
                method="upload",
                params={"file_id": file_id},
                token=None,
                encoding="bytes",
                body=data,
                response={"ok": status == 200},
                status=status,
                files=[upload] if upload else [],
            )
        )
        return PlainTextResponse(text, status_code=status)

    async def _respond(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        try:
            params = json.loads(body) if body else {}
        except ValueError:
            params = {}
        if (faulted := await self._fault("response_url", {"name": name}, body)) is not None:
            return faulted
        uses = self.response_url_uses.get(name, 0) + 1
        self.response_url_uses[name] = uses
        if not isinstance(params, dict) or not params:
            answer, status = {"ok": False, "error": "invalid_payload"}, 400
        elif uses > RESPONSE_URL_USES:
            answer, status = {"ok": False, "error": "used_url"}, 404
        else:
            answer, status = {"ok": True}, 200
        payload = params if isinstance(params, dict) else {}
        self.calls.append(
            Call("response_url", payload, None, "json", body, answer, status, name=name)
        )
        return JSONResponse(answer, status_code=status)

    # -----------------------------------------------------------------------------------------
    # Helpers

    def _ts(self) -> str:
        return f"1700000000.{next(self._serial):06d}"

    def _view_id(self) -> str:
        return f"V{next(self._serial):09d}"

    def _channel(self, params: dict[str, Any]) -> str:
        channel = str(params.get("channel") or "")
        if USER_ID.match(channel):
            return "D" + channel[1:]  # a user ID means the bot's direct-message channel with them
        if not CHANNEL_ID.match(channel):
            raise SlackFailure("channel_not_found")
        return channel

    def _message_content(self, params: dict[str, Any], *, updating: bool = False) -> dict[str, Any]:
        content: dict[str, Any] = {"type": "message"}
        if "text" in params or not updating:
            content["text"] = str(params.get("text") or "")
        for name in ("blocks", "attachments", "metadata"):
            if name in params:
                content[name] = params[name]
        if not updating and not (
            content["text"] or "blocks" in content or "attachments" in content
        ):
            raise SlackFailure("no_text")
        if len(content.get("text", "")) > 40000:
            raise SlackFailure("msg_too_long")
        if "blocks" in content:
            if problems := block_problems(content["blocks"], "/blocks", limit=MESSAGE_BLOCKS):
                raise SlackFailure("invalid_blocks", *problems)
        if "metadata" in content:
            _check_metadata(content["metadata"])
        return content

    def _record_metadata(self, channel: str, ts: str, content: dict[str, Any]) -> None:
        if "metadata" in content:
            self.metadata_sent.setdefault((channel, ts), []).append(content["metadata"])

    def _named(self, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Slack names every block the app left unnamed; clicks and submissions carry the names.
        return [{"block_id": f"b{next(self._serial)}", **block} for block in blocks]

    def _view_argument(self, params: dict[str, Any]) -> dict[str, Any]:
        view = params.get("view")
        if view is None:
            raise SlackFailure("invalid_arguments", "[ERROR] missing required field: view")
        if problems := view_problems(view):
            raise SlackFailure("invalid_arguments", *problems)
        assert isinstance(view, dict)
        return view

    def _store_view(self, view_id: str, view: dict[str, Any]) -> dict[str, Any]:
        stored = {
            "id": view_id,
            "team_id": TEAM_ID,
            "type": view["type"],
            "title": view.get("title"),
            "submit": view.get("submit"),
            "close": view.get("close"),
            "blocks": self._named(view.get("blocks", [])),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id", ""),
            "state": {"values": {}},
            "hash": f"1700000000.{next(self._serial):08x}",
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": APP_ID,
            "app_installed_team_id": TEAM_ID,
            "bot_id": BOT_ID,
        }
        self.views[view_id] = stored
        return stored


async def _arguments(request: Request, body: bytes) -> tuple[dict[str, Any], str | None, str]:
    """Arguments, token and encoding, read the way Slack reads a Web API request."""
    params: dict[str, Any] = dict(request.query_params)
    content_type = request.headers.get("content-type", "")
    encoding = "query"
    body_token: str | None = params.pop("token", None)
    if content_type.startswith("application/json"):
        encoding = "json"
        try:
            decoded = json.loads(body) if body else {}
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            params.update(decoded)
        body_token = None  # JSON requests must carry the token in the header
    elif content_type.startswith("multipart/form-data"):
        encoding = "form"
        form = await request.form()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
        await form.close()
        body_token = params.pop("token", body_token)
    elif body:
        encoding = "form"
        params.update(parse_qsl(body.decode(), keep_blank_values=True))
        body_token = params.pop("token", body_token)
    for name in JSON_FIELDS:
        if isinstance(params.get(name), str):
            with contextlib.suppress(ValueError):
                params[name] = json.loads(params[name])
    header = request.headers.get("authorization", "")
    token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
    return params, token or body_token, encoding


def _check_metadata(metadata: Any) -> None:
    """Message metadata as Slack takes it: `{"event_type": "…", "event_payload": {…}}`."""
    if not (
        isinstance(metadata, dict)
        and isinstance(metadata.get("event_type"), str)
        and metadata["event_type"]
        and isinstance(metadata.get("event_payload"), dict)
    ):
        raise SlackFailure("invalid_metadata_format")


def _file_object(upload: UploadedFile) -> dict[str, Any]:
    mimetype = mimetypes.guess_type(upload.filename)[0] or "application/octet-stream"
    extension = upload.filename.rsplit(".", 1)[-1].lower() if "." in upload.filename else ""
    private = f"https://files.slack.com/files-pri/{TEAM_ID}-{upload.id}/{upload.filename}"
    return {
        "id": upload.id,
        "created": 1700000000,
        "timestamp": 1700000000,
        "name": upload.filename,
        "title": upload.title,
        "mimetype": mimetype,
        "filetype": extension,
        "user": BOT_USER_ID,
        "size": len(upload.data or b""),
        "mode": "hosted",
        "is_external": False,
        "is_public": any(c.startswith("C") for c in upload.channels),
        "url_private": private,
        "url_private_download": private.replace("files-pri", "files-pri/download", 1),
        "permalink": f"https://{TEAM_DOMAIN}.slack.com/files/{BOT_USER_ID}/{upload.id}",
        "channels": [c for c in upload.channels if c.startswith("C")],
        "groups": [c for c in upload.channels if c.startswith("G")],
        "ims": [c for c in upload.channels if c.startswith("D")],
        "comments_count": 0,
    }


@contextlib.asynccontextmanager
async def serve_slack_double(
    double: SlackApiDouble | None = None,
) -> AsyncIterator[SlackApiDouble]:
    """Serve a Slack Web API double on a loopback port for the length of the block.

    It runs in its own thread (it holds no loop-bound state), so it keeps answering even while a
    test blocks its own loop, e.g. on `subprocess.run` of the bot.
    """
    double = double if double is not None else SlackApiDouble()
    async with serve_asgi(double.app(), thread=True) as base_url:
        double.base_url = base_url
        yield double
