"""The Block Kit limits Slack enforces, checked the way Slack reports them.

Slack refuses a message or view that breaks these limits (`invalid_blocks` for messages,
`invalid_arguments` for views) and lists each problem as
`[ERROR] <what> [json-pointer:<where>]` in `response_metadata.messages`. Checking them in the
double makes a too-long section or an empty button label fail in tests the way it would fail in
production, instead of passing silently.
"""

from __future__ import annotations

from typing import Any

MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100

BLOCK_TYPES = {
    "actions",
    "context",
    "divider",
    "file",
    "header",
    "image",
    "input",
    "markdown",
    "rich_text",
    "section",
    "table",
    "video",
}
TEXT_TYPES = {"plain_text", "mrkdwn"}
SELECT_TYPES = {
    "static_select",
    "multi_static_select",
    "radio_buttons",
    "checkboxes",
    "overflow",
}


def block_problems(blocks: Any, pointer: str, *, limit: int) -> list[str]:
    """Every limit `blocks` breaks, as Slack's `[ERROR] …` lines; empty when Slack would accept."""
    if not isinstance(blocks, list):
        return [_error("must provide an array", pointer)]
    problems: list[str] = []
    if len(blocks) > limit:
        problems.append(_error(f"no more than {limit} items allowed", pointer))
    for index, block in enumerate(blocks):
        problems += _block(block, f"{pointer}/{index}")
    return problems


def view_problems(view: Any, pointer: str = "/view") -> list[str]:
    """The limits of a modal or Home tab view (title, buttons, metadata, blocks)."""
    if not isinstance(view, dict):
        return [_error("must provide an object", pointer)]
    problems: list[str] = []
    kind = view.get("type")
    if kind not in ("modal", "home"):
        problems.append(_error(f"unsupported type: {kind}", f"{pointer}/type"))
    if kind == "modal":
        if "title" not in view:
            problems.append(_error("missing required field: title", pointer))
        for name in ("title", "submit", "close"):
            if name in view:
                problems += _text(view[name], f"{pointer}/{name}", 24, plain=True)
        blocks = view.get("blocks", [])
        has_input = isinstance(blocks, list) and any(
            isinstance(b, dict) and b.get("type") == "input" for b in blocks
        )
        if has_input and "submit" not in view:
            problems.append(_error("submit is required when an input block is present", pointer))
    problems += _length(view.get("private_metadata"), f"{pointer}/private_metadata", 3000)
    problems += _length(view.get("callback_id"), f"{pointer}/callback_id", 255)
    problems += _length(view.get("external_id"), f"{pointer}/external_id", 255)
    problems += block_problems(view.get("blocks"), f"{pointer}/blocks", limit=VIEW_BLOCKS)
    return problems


def _block(block: Any, at: str) -> list[str]:
    if not isinstance(block, dict):
        return [_error("must provide an object", at)]
    kind = block.get("type")
    if kind not in BLOCK_TYPES:
        return [_error(f"unsupported type: {kind}", f"{at}/type")]
    problems = _length(block.get("block_id"), f"{at}/block_id", 255)
    if kind == "section":
        if "text" not in block and "fields" not in block:
            problems.append(_error("must provide either text or fields", at))
        if "text" in block:
            problems += _text(block["text"], f"{at}/text", 3000)
        fields = block.get("fields", [])
        if len(fields) > 10:
            problems.append(_error("no more than 10 items allowed", f"{at}/fields"))
        for i, item in enumerate(fields):
            problems += _text(item, f"{at}/fields/{i}", 2000)
        if "accessory" in block:
            problems += _element(block["accessory"], f"{at}/accessory")
    elif kind == "header":
        problems += _text(block.get("text"), f"{at}/text", 150, plain=True)
    elif kind == "actions":
        problems += _elements(block.get("elements"), f"{at}/elements", 25)
        for i, element in enumerate(block.get("elements") or []):
            problems += _element(element, f"{at}/elements/{i}")
    elif kind == "context":
        problems += _elements(block.get("elements"), f"{at}/elements", 10)
    elif kind == "input":
        problems += _text(block.get("label"), f"{at}/label", 2000, plain=True)
        if "hint" in block:
            problems += _text(block["hint"], f"{at}/hint", 2000, plain=True)
        if not isinstance(block.get("element"), dict):
            problems.append(_error("missing required field: element", at))
        else:
            problems += _element(block["element"], f"{at}/element")
    return problems


def _elements(elements: Any, at: str, limit: int) -> list[str]:
    if not isinstance(elements, list) or not elements:
        return [_error("must provide a non-empty array", at)]
    if len(elements) > limit:
        return [_error(f"no more than {limit} items allowed", at)]
    return []


def _element(element: Any, at: str) -> list[str]:
    if not isinstance(element, dict):
        return [_error("must provide an object", at)]
    problems = _length(element.get("action_id"), f"{at}/action_id", 255)
    kind = element.get("type")
    if kind == "button":
        problems += _text(element.get("text"), f"{at}/text", 75, plain=True)
        problems += _length(element.get("value"), f"{at}/value", 2000)
        problems += _length(element.get("url"), f"{at}/url", 3000)
        if element.get("style") not in (None, "primary", "danger"):
            problems.append(_error("must be either primary or danger", f"{at}/style"))
    elif kind in SELECT_TYPES:
        options = element.get("options")
        if options is not None:
            if not isinstance(options, list) or len(options) > 100:
                problems.append(_error("no more than 100 items allowed", f"{at}/options"))
            else:
                for i, option in enumerate(options):
                    problems += _option(option, f"{at}/options/{i}")
    elif kind == "plain_text_input":
        problems += _length(element.get("initial_value"), f"{at}/initial_value", 3000)
    return problems


def _option(option: Any, at: str) -> list[str]:
    if not isinstance(option, dict):
        return [_error("must provide an object", at)]
    problems = _text(option.get("text"), f"{at}/text", 75)
    problems += _length(option.get("value"), f"{at}/value", 150)
    return problems


def _text(obj: Any, at: str, limit: int, *, plain: bool = False) -> list[str]:
    if not isinstance(obj, dict):
        return [_error("must provide an object", at)]
    allowed = {"plain_text"} if plain else TEXT_TYPES
    if obj.get("type") not in allowed:
        return [_error(f"must be one of {sorted(allowed)}", f"{at}/type")]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [_error("must be more than 0 characters", f"{at}/text")]
    return _length(text, f"{at}/text", limit)


def _length(value: Any, at: str, limit: int) -> list[str]:
    if isinstance(value, str) and len(value) > limit:
        return [_error(f"must be less than {limit + 1} characters", at)]
    return []


def _error(what: str, at: str) -> str:
    return f"[ERROR] {what} [json-pointer:{at}]"
