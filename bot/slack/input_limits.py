"""What the bot accepts from outside before anything reads it: request bodies at `/slack/events`
and typed command text.

`read_body` takes at most `MAX_BODY_BYTES` (refusing on a larger Content-Length before reading
and counting while it streams, for chunked or lying bodies); `malformed` says why Bolt could not
read a body (bytes that are not UTF-8, a `payload` or JSON body that is not an object, a
timestamp that is not a number), so such requests get a 400 instead of a traceback;
`commands.grammar.text_refusal` is the one sentence for command text over Slack's limit, checked
before the text is split into words (splitting a megabyte of quoted words takes seconds).
`refuse_long_command_text` applies it to slash commands as a Bolt middleware.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slack_bolt.request.internals import parse_body
from slack_bolt.response import BoltResponse
from starlette.requests import Request

from commands.grammar import text_refusal

log = logging.getLogger(__name__)

# Slack's own requests are a few kilobytes (a modal submission with every field filled is the
# largest); 1 MB is generous and still small enough to hold while checking a signature.
MAX_BODY_BYTES = 1_000_000

# Slack sends Unix seconds; anything but a few ASCII digits makes slack_sdk's signature check
# (`int(timestamp)`) raise instead of answering False.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class BodyTooLarge(Exception):
    """The request body is over `MAX_BODY_BYTES` (said by Content-Length, or counted)."""


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body, or `BodyTooLarge` as soon as it is known to be over `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


def malformed(headers: Mapping[str, str], body: bytes) -> str | None:
    """Why Bolt could not read this request (a short reason for the log), or None.

    The body is read with Bolt's own `parse_body`, as its request will read it: what does not
    parse, or parses to something other than an object, is refused here.
    """
    timestamp = headers.get("x-slack-request-timestamp")
    if timestamp is not None and not _TIMESTAMP.fullmatch(timestamp):
        return "the request timestamp is not a number"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not UTF-8"
    content_type = headers.get("content-type", "").split(";")[0].strip().lower() or None
    try:
        parsed = parse_body(text, content_type)
    except ValueError:  # json.JSONDecodeError: a payload or JSON body that is not JSON
        return "the body or its payload is not JSON"
    if not isinstance(parsed, dict):
        return f"the body or its payload is JSON {type(parsed).__name__}, not an object"
    return None


async def refuse_long_command_text(
    body: dict[str, Any], next: Callable[[], Awaitable[None]]
) -> BoltResponse | None:
    """Bolt middleware: a slash command whose text is over the limit is answered with the
    refusal as its private acknowledgement, and goes no further (no listener, no parsing)."""
    text = body.get("text")
    if "command" in body and isinstance(text, str):
        refusal = text_refusal(text)
        if refusal is not None:
            log.info("refused %s: its text has %d characters", body.get("command"), len(text))
            answer = {"response_type": "ephemeral", "text": refusal}
            return BoltResponse(
                status=200,
                body=json.dumps(answer),
                headers={"content-type": "application/json"},
            )
    await next()
    return None
