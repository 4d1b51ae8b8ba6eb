"""The doubles behave as Slack does for the clients the bot uses (slack_sdk, slack_bolt)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from commands.invoicexpress.sandbox import SANDBOX_API_KEY, InvoiceXpressSandbox
from tests.support.server import serve_asgi
from tests.support.signing import (
    block_actions_payload,
    interactivity_body,
    signed_headers,
    slash_command_body,
    slash_command_fields,
    view_submission_payload,
)
from tests.support.slack_api import (
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER_ID,
    Fault,
    SlackApiDouble,
    SlackUser,
    serve_slack_double,
)
from tests.support.socket_mode import serve_socket_mode_double

SECRET = "test-signing-secret"
# Not valid UTF-8, with every byte value, so any decoding or re-encoding on the way shows.
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 4 + b"\n%%EOF\n"
SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "*Invoice* 12"}}


@asynccontextmanager
async def slack_client(
    double: SlackApiDouble | None = None,
) -> AsyncIterator[tuple[SlackApiDouble, AsyncWebClient]]:
    async with serve_slack_double(double) as slack:
        yield slack, AsyncWebClient(base_url=slack.url, token=BOT_TOKEN)


async def slack_error(call: Any) -> dict[str, Any]:
    """The body of the error Slack answered to the awaited `call`."""
    with pytest.raises(SlackApiError) as raised:
        await call
    body: dict[str, Any] = raised.value.response.data
    return body


# ---------------------------------------------------------------------------------------------
# Web API: messages


async def test_post_message_returns_ts_and_channel_and_records_the_json_request() -> None:
    async with slack_client() as (slack, client):
        posted = await client.chat_postMessage(channel="C1", text="Invoice 12", blocks=[SECTION])

        assert posted["ok"] is True and posted["channel"] == "C1"
        [call] = slack.calls_to("chat.postMessage")
        assert call.encoding == "json" and call.token == BOT_TOKEN
        assert call.params["blocks"] == [SECTION] and call.params["text"] == "Invoice 12"
        stored = slack.message("C1", posted["ts"])
        assert stored["user"] == BOT_USER_ID and stored["text"] == "Invoice 12"
        # Slack names unnamed blocks; the name is what a click on the message will carry.
        assert stored["blocks"][0]["block_id"] and stored["blocks"][0]["text"] == SECTION["text"]


async def test_form_encoded_arguments_and_token_argument_are_read_like_slack() -> None:
    async with slack_client() as (slack, client):
        anonymous = AsyncWebClient(base_url=slack.url)
        data = {"token": BOT_TOKEN, "channel": "C1", "blocks": json.dumps([SECTION])}
        posted = await anonymous.api_call("chat.postMessage", data=data)

        [call] = slack.calls_to("chat.postMessage")
        assert call.encoding == "form" and call.token == BOT_TOKEN
        assert call.params["blocks"] == [SECTION] and "token" not in call.params
        assert slack.message("C1", posted["ts"])["text"] == ""


async def test_update_replaces_what_it_sends_and_keeps_the_rest() -> None:
    async with slack_client() as (slack, client):
        posted = await client.chat_postMessage(channel="C1", text="pending", blocks=[SECTION])
        ts = posted["ts"]

        updated = await client.chat_update(channel="C1", ts=ts, text="approved by <@U2>")
        assert updated["ts"] == ts and updated["text"] == "approved by <@U2>"
        assert slack.message("C1", ts)["blocks"][0]["text"] == SECTION["text"]

        await client.chat_update(channel="C1", ts=ts, text="done", blocks=[])
        assert "blocks" not in slack.message("C1", ts)
        assert slack.message("C1", ts)["edited"]["user"] == BOT_USER_ID

        missing = await slack_error(client.chat_update(channel="C1", ts="1.000001", text="x"))
        assert missing["error"] == "message_not_found"


async def test_history_pages_newest_first_with_metadata_only_when_asked() -> None:
    metadata = {"event_type": "billing_audit_anchor", "event_payload": {"seq": "1"}}
    async with slack_client() as (slack, client):
        first = await client.chat_postMessage(channel="C1", text="one", metadata=metadata)
        second = await client.chat_postMessage(channel="C1", text="two")
        await client.chat_postMessage(channel="C2", text="elsewhere")
        theirs = slack.add_message("C1", {"user": "U7", "text": "three"})

        page = await client.conversations_history(channel="C1", limit=2)
        assert [m["ts"] for m in page["messages"]] == [theirs, second["ts"]]
        assert page["has_more"] and page["response_metadata"]["next_cursor"]
        pages = await client.conversations_history(channel="C1", limit=2, include_all_metadata=True)
        messages = [m async for p in pages for m in p["messages"]]
        assert [m["text"] for m in messages] == ["three", "two", "one"]
        assert messages[2]["metadata"] == metadata and messages[2]["ts"] == first["ts"]
        assert messages[2]["bot_id"] and "bot_id" not in messages[0]
        plain = await client.conversations_history(channel="C1")
        assert all("metadata" not in m for m in plain["messages"])


async def test_history_needs_the_history_scope_of_the_channel_s_kind() -> None:
    double = SlackApiDouble(scopes={"channels:history"}, not_in_channel={"C9"})
    async with slack_client(double) as (slack, client):
        assert (await client.conversations_history(channel="C1"))["messages"] == []
        private = await slack_error(client.conversations_history(channel="G1"))
        assert private["error"] == "missing_scope"
        outside = await slack_error(client.conversations_history(channel="C9"))
        assert outside["error"] == "not_in_channel"


async def test_ephemeral_messages_cannot_be_updated_and_permalinks_point_at_the_message() -> None:
    async with slack_client() as (slack, client):
        ephemeral = await client.chat_postEphemeral(channel="C1", user="U1", text="only you")
        assert slack.ephemerals[0]["user"] == "U1" and slack.ephemerals[0]["text"] == "only you"
        ts = ephemeral["message_ts"]
        stale = await slack_error(client.chat_update(channel="C1", ts=ts, text="x"))
        assert stale["error"] == "message_not_found"

        posted = await client.chat_postMessage(channel="C1", text="request")
        link = await client.chat_getPermalink(channel="C1", message_ts=posted["ts"])
        assert link["permalink"].endswith("/archives/C1/p" + posted["ts"].replace(".", ""))


async def test_permalinks_fail_as_slack_fails_them() -> None:
    async with slack_client() as (slack, client):
        posted = await client.chat_postMessage(channel="C1", text="request")
        gone = await slack_error(client.chat_getPermalink(channel="C1", message_ts="1.000009"))
        assert gone["error"] == "message_not_found"
        nowhere = await slack_error(client.chat_getPermalink(channel="#x", message_ts=posted["ts"]))
        assert nowhere["error"] == "channel_not_found"
        slack.inject("chat.getPermalink", Fault(status=429, retry_after=3))
        limited = await slack_error(client.chat_getPermalink(channel="C1", message_ts=posted["ts"]))
        assert limited["error"] == "ratelimited"
        faulted = slack.calls_to("chat.getPermalink")[-1]
        assert faulted.status == 429 and faulted.encoding == "fault"
        link = await client.chat_getPermalink(channel="C1", message_ts=posted["ts"])
        assert link["channel"] == "C1" and link["permalink"].startswith("https://")


async def test_a_user_id_as_channel_posts_to_the_direct_message_channel() -> None:
    async with slack_client() as (slack, client):
        posted = await client.chat_postMessage(channel="U2", text="a note for you")
        assert posted["channel"].startswith("D")
        assert slack.message(posted["channel"], posted["ts"])["text"] == "a note for you"


async def test_messages_without_content_or_breaking_block_kit_limits_are_refused() -> None:
    async with slack_client() as (slack, client):
        empty = await slack_error(client.api_call("chat.postMessage", json={"channel": "C1"}))
        assert empty["error"] == "no_text"

        long = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}
        too_long = await slack_error(client.chat_postMessage(channel="C1", text="x", blocks=[long]))
        assert too_long["error"] == "invalid_blocks"
        assert too_long["response_metadata"]["messages"] == [
            "[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]"
        ]

        button = {"type": "button", "text": {"type": "mrkdwn", "text": "Go"}, "action_id": "go"}
        actions = {"type": "actions", "elements": [button]}
        wrong = await slack_error(client.chat_postMessage(channel="C1", text="x", blocks=[actions]))
        assert wrong["response_metadata"]["messages"] == [
            "[ERROR] must be one of ['plain_text'] [json-pointer:/blocks/0/elements/0/text/type]"
        ]
        assert slack.messages == {}


async def test_tokens_are_checked_like_slack() -> None:
    async with slack_client() as (slack, _):
        nobody = AsyncWebClient(base_url=slack.url)
        assert (await slack_error(nobody.auth_test()))["error"] == "not_authed"
        wrong = AsyncWebClient(base_url=slack.url, token="xoxb-wrong")
        assert (await slack_error(wrong.auth_test()))["error"] == "invalid_auth"
        app_level = AsyncWebClient(base_url=slack.url, token=APP_TOKEN)
        refused = await slack_error(app_level.chat_postMessage(channel="C1", text="x"))
        assert refused["error"] == "not_allowed_token_type"
        assert [c.ok for c in slack.calls] == [False, False, False]


async def test_auth_test_names_the_bot() -> None:
    async with slack_client() as (_, client):
        identity = await client.auth_test()
        assert identity["user_id"] == BOT_USER_ID and identity["bot_id"].startswith("B")


async def test_fail_next_answers_with_the_error_then_recovers() -> None:
    async with slack_client() as (slack, client):
        slack.fail_next("chat.postMessage", "ratelimited")
        limited = await slack_error(client.chat_postMessage(channel="C1", text="x"))
        assert limited["error"] == "ratelimited"
        assert slack.calls_to("chat.postMessage")[0].status == 429

        assert (await client.chat_postMessage(channel="C1", text="x"))["ok"] is True


# ---------------------------------------------------------------------------------------------
# Web API: files


async def test_files_upload_v2_records_the_exact_bytes_and_the_share() -> None:
    async with slack_client() as (slack, client):
        done = await client.files_upload_v2(
            channel="C1",
            content=PDF,
            filename="invoice-12.pdf",
            title="Invoice 12",
            initial_comment="Invoice 12 for acme",
        )

        [asked] = slack.calls_to("files.getUploadURLExternal")
        assert asked.params["filename"] == "invoice-12.pdf"
        assert asked.params["length"] == str(len(PDF))
        [upload] = slack.calls_to("upload")
        assert upload.body == PDF
        [complete] = slack.calls_to("files.completeUploadExternal")
        [shared] = complete.files
        assert shared.data == PDF and shared.title == "Invoice 12"
        assert shared.channels == ["C1"] and shared.initial_comment == "Invoice 12 for acme"
        assert done["file"]["id"] == shared.id and done["file"]["size"] == len(PDF)


async def test_files_are_refused_in_a_channel_the_bot_is_not_in() -> None:
    async with slack_client(SlackApiDouble(not_in_channel={"C2"})) as (slack, client):
        refused = await slack_error(client.files_upload_v2(channel="C2", content=PDF, filename="a"))
        assert refused["error"] == "not_in_channel"
        assert slack.shared_files() == []

        post = await slack_error(client.chat_postMessage(channel="C2", text="x"))
        assert post["error"] == "not_in_channel"
        info = await client.conversations_info(channel="C2")
        assert info["channel"]["is_member"] is False
        assert (await client.conversations_info(channel="C1"))["channel"]["is_member"] is True


async def test_an_upload_url_takes_one_upload() -> None:
    async with slack_client() as (slack, client):
        issued = await client.files_getUploadURLExternal(filename="a.pdf", length=3)
        async with httpx.AsyncClient() as http:
            first = await http.post(issued["upload_url"], content=b"abc")
            second = await http.post(issued["upload_url"], content=b"xyz")
        assert (first.status_code, first.text) == (200, "OK - 3")
        assert second.status_code == 404
        assert slack.uploads[issued["file_id"]].data == b"abc"


# ---------------------------------------------------------------------------------------------
# Web API: people, groups, views


async def test_usergroup_members_come_from_the_configured_mapping() -> None:
    groups = {"S0APPROVERS": ["U1", "U2"]}
    async with slack_client(SlackApiDouble(usergroups=groups)) as (_, client):
        listed = await client.usergroups_users_list(usergroup="S0APPROVERS")
        assert listed["users"] == ["U1", "U2"]
        unknown = await slack_error(client.usergroups_users_list(usergroup="S0NOBODY"))
        assert unknown["error"] == "no_such_subteam"


async def test_users_info_reports_the_configured_time_zone() -> None:
    users = {"U1": SlackUser("ana", "Ana Lima", tz="Europe/Lisbon")}
    async with slack_client(SlackApiDouble(users=users)) as (_, client):
        ana = (await client.users_info(user="U1"))["user"]
        assert (ana["name"], ana["tz"]) == ("ana", "Europe/Lisbon")
        assert ana["tz_offset"] in (0, 3600)
        assert (await slack_error(client.users_info(user="nobody")))["error"] == "user_not_found"


MODAL = {
    "type": "modal",
    "callback_id": "at-communication",
    "title": {"type": "plain_text", "text": "AT communication"},
    "submit": {"type": "plain_text", "text": "Save"},
    "blocks": [
        {
            "type": "input",
            "label": {"type": "plain_text", "text": "AT sub-user"},
            "element": {"type": "plain_text_input", "action_id": "at_subuser"},
        },
        {
            "type": "input",
            "block_id": "kind",
            "label": {"type": "plain_text", "text": "Communication"},
            "element": {
                "type": "static_select",
                "action_id": "communication_type",
                "options": [
                    {"text": {"type": "plain_text", "text": t}, "value": t}
                    for t in ("auto", "manual")
                ],
            },
        },
    ],
}


async def test_views_open_update_and_a_submission_built_from_the_opened_view() -> None:
    async with slack_client() as (slack, client):
        opened = (await client.views_open(trigger_id="1.2.3", view=MODAL))["view"]
        assert slack.views[opened["id"]]["callback_id"] == "at-communication"

        payload = view_submission_payload(
            view=opened,
            values={"at_subuser": "123456789/3", "communication_type": "manual"},
            user_id="U7",
        )
        values = payload["view"]["state"]["values"]
        first_block = opened["blocks"][0]["block_id"]
        assert values[first_block]["at_subuser"]["value"] == "123456789/3"
        chosen = values["kind"]["communication_type"]["selected_option"]
        assert chosen["value"] == "manual" and payload["user"]["id"] == "U7"

        renamed = {**MODAL, "title": {"type": "plain_text", "text": "Saved"}}
        updated = await client.views_update(view_id=opened["id"], view=renamed, hash=opened["hash"])
        assert updated["view"]["title"]["text"] == "Saved"
        conflict = await slack_error(
            client.views_update(view_id=opened["id"], view=MODAL, hash=opened["hash"])
        )
        assert conflict["error"] == "hash_conflict"


async def test_views_open_refuses_expired_triggers_and_long_titles() -> None:
    async with slack_client(SlackApiDouble(expired_triggers={"old"})) as (slack, client):
        expired = await slack_error(client.views_open(trigger_id="old", view=MODAL))
        assert expired["error"] == "expired_trigger_id"

        wordy = {**MODAL, "title": {"type": "plain_text", "text": "AT communication settings"}}
        refused = await slack_error(client.views_open(trigger_id="1.2.3", view=wordy))
        assert refused["error"] == "invalid_arguments"
        assert refused["response_metadata"]["messages"] == [
            "[ERROR] must be less than 25 characters [json-pointer:/view/title/text]"
        ]
        assert slack.views == {}


async def test_views_publish_keeps_one_home_view_per_user() -> None:
    home = {"type": "home", "blocks": [SECTION]}
    async with slack_client() as (_, client):
        first = await client.views_publish(user_id="U1", view=home)
        again = await client.views_publish(user_id="U1", view=home)
        other = await client.views_publish(user_id="U2", view=home)
        assert first["view"]["id"] == again["view"]["id"] != other["view"]["id"]


# ---------------------------------------------------------------------------------------------
# response_url


async def test_response_url_posts_are_recorded_and_answer_five_times() -> None:
    async with serve_slack_double() as slack:
        webhook = AsyncWebhookClient(slack.response_url("cmd-1"))
        first = await webhook.send(text="working…", response_type="ephemeral")
        for n in range(4):
            await webhook.send(text=f"step {n}", replace_original=True)
        sixth = await webhook.send(text="too many")

        assert first.status_code == 200 and sixth.status_code == 404
        calls = slack.calls_to("response_url")
        assert [c.name for c in calls] == ["cmd-1"] * 6
        assert calls[0].params == {"text": "working…", "response_type": "ephemeral"}
        assert calls[-1].response == {"ok": False, "error": "used_url"}


# ---------------------------------------------------------------------------------------------
# Signing and the request bodies, checked by slack_sdk and by a bare Bolt app


def test_signed_headers_pass_slacks_verifier_and_a_stale_timestamp_does_not() -> None:
    body = slash_command_body("/billing", "status", response_url="http://x/response/1")
    headers = signed_headers(body, SECRET)
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid_request(body, headers)
    assert not SignatureVerifier("another-secret").is_valid_request(body, headers)
    assert not verifier.is_valid_request(body, signed_headers(body, SECRET, timestamp=1))


def test_slash_command_body_is_the_form_encoding_of_the_fields() -> None:
    fields = slash_command_fields(
        "/smsc", 'invoice get "acme corp" 12', response_url="http://x/r", user_id="U9"
    )
    body = slash_command_body(
        "/smsc",
        'invoice get "acme corp" 12',
        response_url="http://x/r",
        user_id="U9",
        trigger=fields["trigger_id"],
    )
    assert dict(parse_qsl(body.decode())) == fields
    assert fields["text"] == 'invoice get "acme corp" 12' and fields["user_name"] == "u9"


def bolt_app(slack: SlackApiDouble) -> AsyncApp:
    return AsyncApp(
        signing_secret=SECRET,
        client=AsyncWebClient(base_url=slack.url, token=BOT_TOKEN),
    )


def starlette_for(app: AsyncApp) -> Starlette:
    handler = AsyncSlackRequestHandler(app)

    async def events(request: Request) -> Response:
        response: Response = await handler.handle(request)
        return response

    return Starlette(routes=[Route("/slack/events", events, methods=["POST"])])


async def test_bolt_over_http_accepts_a_signed_slash_command_and_responds_through_the_double() -> (
    None
):
    async with serve_slack_double() as slack:
        app = bolt_app(slack)

        @app.command("/billing")
        async def billing(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
            await ack()
            await respond(f"{command['user_id']} asked for {command['text']}")

        body = slash_command_body("/billing", "status", response_url=slack.response_url("s1"))
        async with serve_asgi(starlette_for(app)) as base, httpx.AsyncClient() as http:
            url = f"{base}/slack/events"
            accepted = await http.post(url, content=body, headers=signed_headers(body, SECRET))
            forged = await http.post(url, content=body, headers=signed_headers(body, "wrong"))
            [answer] = await slack.wait_for("response_url")

        assert accepted.status_code == 200 and forged.status_code == 401
        assert answer.name == "s1" and answer.params["text"] == "U1 asked for status"
        assert slack.calls_to("auth.test")[0].token == BOT_TOKEN


async def test_bolt_routes_a_click_built_from_a_posted_message() -> None:
    button = {
        "type": "button",
        "text": {"type": "plain_text", "text": "Approve"},
        "action_id": "approve",
        "value": "approval:42",
        "style": "primary",
    }
    async with slack_client() as (slack, client):
        posted = await client.chat_postMessage(
            channel="C1", text="approve?", blocks=[{"type": "actions", "elements": [button]}]
        )
        app = bolt_app(slack)
        clicks: list[dict[str, Any]] = []

        @app.action("approve")
        async def approve(ack: AsyncAck, body: dict[str, Any]) -> None:
            await ack()
            clicks.append(body)

        payload = block_actions_payload(
            message=slack.message("C1", posted["ts"]),
            action_id="approve",
            channel_id="C1",
            response_url=slack.response_url("click"),
            user_id="U2",
        )
        body = interactivity_body(payload)
        async with serve_asgi(starlette_for(app)) as base, httpx.AsyncClient() as http:
            response = await http.post(
                f"{base}/slack/events", content=body, headers=signed_headers(body, SECRET)
            )

        assert response.status_code == 200
        [click] = clicks
        [action] = click["actions"]
        assert action["value"] == "approval:42" and click["user"]["id"] == "U2"
        assert action["block_id"] == slack.message("C1", posted["ts"])["blocks"][0]["block_id"]
        assert click["container"]["message_ts"] == posted["ts"]


def test_a_click_on_a_button_the_message_lacks_fails_the_test() -> None:
    message = {"ts": "1.000001", "blocks": [{"type": "section", "block_id": "a", **SECTION}]}
    with pytest.raises(AssertionError, match="no button 'approve'"):
        block_actions_payload(
            message=message, action_id="approve", channel_id="C1", response_url=""
        )


async def test_bolt_answers_a_view_submission_with_field_errors() -> None:
    async with slack_client() as (slack, client):
        opened = (await client.views_open(trigger_id="1.2.3", view=MODAL))["view"]
        app = bolt_app(slack)

        @app.view("at-communication")
        async def submitted(ack: AsyncAck, view: dict[str, Any]) -> None:
            block_id = view["blocks"][0]["block_id"]
            value = view["state"]["values"][block_id]["at_subuser"]["value"]
            await ack(response_action="errors", errors={block_id: f"{value} is not a sub-user"})

        payload = view_submission_payload(view=opened, values={"at_subuser": "nine"})
        body = interactivity_body(payload)
        async with serve_asgi(starlette_for(app)) as base, httpx.AsyncClient() as http:
            response = await http.post(
                f"{base}/slack/events", content=body, headers=signed_headers(body, SECRET)
            )

        block_id = opened["blocks"][0]["block_id"]
        assert response.json() == {
            "response_action": "errors",
            "errors": {block_id: "nine is not a sub-user"},
        }


# ---------------------------------------------------------------------------------------------
# Socket Mode, with a bare slack_sdk client


async def test_socket_mode_client_connects_receives_an_envelope_and_acks_it() -> None:
    async with serve_slack_double() as slack, serve_socket_mode_double(slack) as socket:
        client = SocketModeClient(
            app_token=APP_TOKEN, web_client=AsyncWebClient(base_url=slack.url)
        )

        async def ack(client: AsyncBaseSocketModeClient, request: SocketModeRequest) -> None:
            answer = f"{request.payload['command']} {request.payload['text']} from {request.type}"
            response = SocketModeResponse(envelope_id=request.envelope_id, payload={"text": answer})
            await client.send_socket_mode_response(response)

        client.socket_mode_request_listeners.append(ack)
        try:
            await client.connect()  # type: ignore[no-untyped-call]
            await socket.wait_connected()
            envelope_id = await socket.push_slash_command(
                "/billing", "status", response_url=slack.response_url("s")
            )
            acked = await socket.wait_for_ack(envelope_id)
            assert acked.payload == {"text": "/billing status from slash_commands"}

            await socket.disconnect()
            await socket.wait_connected(2)
            second = await socket.push_slash_command(
                "/billing", "help", response_url=slack.response_url("h")
            )
            assert (await socket.wait_for_ack(second)).payload is not None
        finally:
            await client.close()  # type: ignore[no-untyped-call]

        opened = slack.calls_to("apps.connections.open")
        assert len(opened) == 2 and {c.token for c in opened} == {APP_TOKEN}
        assert socket.envelopes[0]["accepts_response_payload"] is True


async def test_socket_url_needs_an_issued_ticket() -> None:
    async with serve_slack_double() as slack, serve_socket_mode_double(slack) as socket:
        async with httpx.AsyncClient() as http:
            forged = await http.get(
                f"{socket.base_url.replace('ws://', 'http://')}/link/?ticket=guess",
                headers={
                    "Connection": "Upgrade",
                    "Upgrade": "websocket",
                    "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                },
            )
        assert forged.status_code == 401
        refused = await slack_error(
            AsyncWebClient(base_url=slack.url, token=BOT_TOKEN).apps_connections_open(
                app_token=BOT_TOKEN
            )
        )
        assert refused["error"] == "not_allowed_token_type"


# ---------------------------------------------------------------------------------------------
# serve_asgi


@pytest.mark.parametrize("thread", [False, True])
async def test_serve_asgi_serves_a_sandbox_and_frees_the_port(thread: bool) -> None:
    sandbox = InvoiceXpressSandbox()
    async with serve_asgi(sandbox.app(), thread=thread) as base, httpx.AsyncClient() as http:
        answer = await http.get(f"{base}/sequences.json", params={"api_key": SANDBOX_API_KEY})
        assert answer.status_code == 200 and answer.json()["sequences"]
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"{base}/sequences.json")
    assert sandbox.control.requests[0].path == "/sequences.json"


async def test_a_threaded_server_answers_while_the_test_blocks_its_loop() -> None:
    async with serve_slack_double() as slack:
        # A blocking call from the test's own loop, as `subprocess.run` of the bot would be.
        answer = httpx.post(
            f"{slack.url}auth.test", headers={"Authorization": f"Bearer {BOT_TOKEN}"}
        )
        assert answer.json()["user_id"] == BOT_USER_ID


@pytest.mark.parametrize("thread", [False, True])
async def test_serve_asgi_reports_an_app_that_fails_to_start(thread: bool) -> None:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield

    with pytest.raises(RuntimeError, match="stopped during startup"):
        async with serve_asgi(Starlette(lifespan=lifespan), thread=thread):
            pass
