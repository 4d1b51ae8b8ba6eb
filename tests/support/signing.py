"""Requests as Slack sends them to an app: signed HTTP bodies and Socket Mode payloads.

`signed_headers` signs a body the way Slack does (v0 HMAC-SHA256 over `v0:<timestamp>:<body>`).
The `*_fields` / `*_payload` builders produce Slack's real shapes for a slash command, a button
click (`block_actions`) and a modal submission (`view_submission`); `form_body` and
`interactivity_body` encode them for `POST /slack/events`, and the same dictionaries are what a
Socket Mode envelope carries as its payload.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

from tests.support.slack_api import APP_ID, TEAM_DOMAIN, TEAM_ID

FORM = "application/x-www-form-urlencoded"
VERIFICATION_TOKEN = "legacy-verification-token"
_serial = itertools.count(1)


def signature(body: bytes, secret: str, timestamp: int) -> str:
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(
    body: bytes, secret: str, timestamp: int | None = None, *, content_type: str = FORM
) -> dict[str, str]:
    """The headers Slack sends with `body`; `timestamp` defaults to now (Bolt allows 5 minutes)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": str(stamp),
        "X-Slack-Signature": signature(body, secret, stamp),
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    }


def trigger_id() -> str:
    """A fresh trigger ID in Slack's form; views.open accepts each one."""
    n = next(_serial)
    return f"{1700000000 + n}.{TEAM_ID[1:]}.{n:032x}"


def slash_command_fields(
    command: str,
    text: str,
    *,
    response_url: str,
    user_id: str = "U1",
    user_name: str | None = None,
    channel_id: str = "C1",
    channel_name: str = "billing",
    team_id: str = TEAM_ID,
    trigger: str | None = None,
) -> dict[str, str]:
    """A slash command's fields, as posted form-encoded (HTTP) or as a payload (Socket Mode)."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name or user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger or trigger_id(),
    }


def function_executed_payload(
    callback_id: str,
    inputs: dict[str, Any],
    *,
    execution: str,
    workflow: str = "Wx0BILLING1",
    token: str = "xwfp-test-function-token",
) -> dict[str, Any]:
    """An `event_callback` carrying `function_executed`, as Slack sends it when a workflow
    reaches one of the app's steps (https://api.slack.com/events/function_executed)."""
    n = next(_serial)
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "type": "event_callback",
        "event_id": f"Ev{n:010d}",
        "event_time": int(time.time()),
        "event": {
            "type": "function_executed",
            "function": {
                "id": f"Fn{n:08d}",
                "callback_id": callback_id,
                "title": callback_id,
                "description": "",
                "type": "app",
                "input_parameters": [],
                "output_parameters": [],
                "app_id": APP_ID,
                "date_created": 1700000000,
                "date_updated": 1700000000,
                "date_deleted": 0,
            },
            "inputs": inputs,
            "function_execution_id": execution,
            "workflow_execution_id": workflow,
            "event_ts": f"{time.time():.6f}",
            "bot_access_token": token,
        },
        "authorizations": [
            {
                "team_id": TEAM_ID,
                "user_id": "U0BILLBOT1",
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }


def form_body(fields: dict[str, str]) -> bytes:
    return urlencode(fields).encode()


def slash_command_body(command: str, text: str, **fields: Any) -> bytes:
    """`slash_command_fields(...)` form-encoded, ready to sign and POST."""
    return form_body(slash_command_fields(command, text, **fields))


def interactivity_body(payload: dict[str, Any]) -> bytes:
    """Interactivity requests are form-encoded with the JSON in one `payload` field."""
    return form_body({"payload": json.dumps(payload)})


def _user(user_id: str) -> dict[str, str]:
    return {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": TEAM_ID}


def block_actions_payload(
    *,
    message: dict[str, Any],
    action_id: str,
    channel_id: str,
    response_url: str,
    user_id: str = "U1",
    is_ephemeral: bool = False,
) -> dict[str, Any]:
    """The payload of a click on the button `action_id` in `message` (as posted, with its `ts`).

    The button is looked up in the message's blocks, so the click carries exactly the block_id,
    value and label the app rendered; a missing button is a test failure.
    """
    block_id, button = _find_button(message.get("blocks") or [], action_id)
    message_ts = str(message.get("ts", ""))
    action = {
        "type": "button",
        "block_id": block_id,
        "action_id": action_id,
        "text": button["text"],
        "action_ts": f"{time.time():.6f}",
    }
    for key in ("value", "style"):
        if key in button:
            action[key] = button[key]
    return {
        "type": "block_actions",
        "user": _user(user_id),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": is_ephemeral,
        },
        "trigger_id": trigger_id(),
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "billing"},
        "message": message,
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }


def _find_button(blocks: list[dict[str, Any]], action_id: str) -> tuple[str, dict[str, Any]]:
    seen: list[str] = []
    for block in blocks:
        elements = list(block.get("elements") or [])
        if "accessory" in block:
            elements.append(block["accessory"])
        for element in elements:
            if isinstance(element, dict) and element.get("type") == "button":
                if element.get("action_id") == action_id:
                    return str(block.get("block_id", "")), element
                seen.append(str(element.get("action_id")))
    raise AssertionError(f"no button {action_id!r} in the message; buttons: {seen or 'none'}")


def view_submission_payload(
    *, view: dict[str, Any], values: dict[str, Any], user_id: str = "U1"
) -> dict[str, Any]:
    """The payload of submitting `view` (as views.open returned it) with `values`.

    `values` maps an input's action_id (or block_id) to what the user entered: a string for
    text, number, date, select and radio inputs (selects take the option's value), a list of
    option values for checkboxes and multi-selects, None for an empty input.
    """
    state: dict[str, dict[str, Any]] = {}
    unused = dict(values)
    for block in view.get("blocks", []):
        if block.get("type") != "input":
            continue
        element = block["element"]
        key = element.get("action_id") or block["block_id"]
        given = unused.pop(key) if key in unused else unused.pop(block["block_id"], None)
        state[block["block_id"]] = {key: _element_state(element, given)}
    if unused:
        raise AssertionError(f"the view has no input named {sorted(unused)}")
    submitted = {**view, "state": {"values": state}}
    return {
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "user": _user(user_id),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id(),
        "view": submitted,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def _element_state(element: dict[str, Any], given: Any) -> dict[str, Any]:
    kind = element["type"]
    state: dict[str, Any] = {"type": kind}
    if kind in ("static_select", "radio_buttons"):
        state["selected_option"] = _option(element, given) if given is not None else None
    elif kind in ("checkboxes", "multi_static_select"):
        state["selected_options"] = [_option(element, v) for v in given or []]
    elif kind == "datepicker":
        state["selected_date"] = given
    elif kind == "timepicker":
        state["selected_time"] = given
    elif kind == "users_select":
        state["selected_user"] = given
    elif kind == "multi_users_select":
        state["selected_users"] = list(given or [])
    elif kind == "conversations_select":
        state["selected_conversation"] = given
    elif kind == "channels_select":
        state["selected_channel"] = given
    else:  # plain_text_input, number_input, email_text_input, url_text_input
        state["value"] = given
    return state


def _option(element: dict[str, Any], value: str) -> dict[str, Any]:
    for option in element.get("options") or []:
        if option.get("value") == value:
            return dict(option)
    offered = [o.get("value") for o in element.get("options") or []]
    raise AssertionError(f"{element.get('action_id')} offers no option {value!r}: {offered}")
