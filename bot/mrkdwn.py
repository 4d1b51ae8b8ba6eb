"""Slack mrkdwn → terminal text: styled fragments for prompt_toolkit, or plain text.

The markup is Slack's, from its formatting reference
(https://api.slack.com/reference/surfaces/formatting): `*bold*`, `_italic_`, `~strike~`,
`` `code` ``, ```` ```preformatted``` ````, links `<url|text>`, mentions `<@U…>`, `<#C…>` and
`<!here>`, and the escapes `&amp;` `&lt;` `&gt;`. The libraries on PyPI convert the other way
(Markdown → mrkdwn), so this is a small tokenizer of its own: one regular expression whose
alternatives are tried left to right, code first so that nothing inside code is reinterpreted
(a cron such as `0 8 * * 1` keeps its asterisks).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from prompt_toolkit.utils import get_cwidth

from commands.base import Table

Fragment = tuple[str, str]

_TOKEN = re.compile(
    r"```\n?(?P<pre>.*?)\n?```"
    r"|`(?P<code>[^`\n]+)`"
    r"|<(?P<angle>[^<>\n]+)>"
    # Emphasis hugs its words (`*bold*`), so a lone `*` or `a * b` is left alone.
    r"|(?<![\w`*])\*(?P<bold>\S(?:[^*\n]*\S)?)\*(?![\w`*])"
    r"|(?<![\w`])_(?P<italic>\S(?:[^_\n]*\S)?)_(?![\w`])"
    r"|(?<![\w`~])~(?P<strike>\S(?:[^~\n]*\S)?)~(?![\w`~])",
    re.DOTALL,
)
_SPECIAL = {"here": "@here", "channel": "@channel", "everyone": "@everyone"}
_PERMALINK = re.compile(r"^https://[\w.-]*slack\.com/archives/(?P<channel>[A-Z0-9]+)/p(?P<ts>\d+)$")


def unescape(text: str) -> str:
    """Slack escapes only these three characters in message text."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@dataclass(frozen=True)
class Names:
    """How Slack ids read in a terminal: channel names, and links to messages shown earlier.

    `message` maps a permalink's (channel, ts without the dot) to a label such as "message 3",
    or None when the message is not one this terminal knows."""

    channels: Mapping[str, str] = field(default_factory=dict)
    message: Callable[[str, str], str | None] = lambda channel, ts: None

    def channel(self, channel_id: str) -> str:
        return self.channels.get(channel_id, channel_id)


def fragments(text: str, names: Names | None = None, style: str = "") -> list[Fragment]:
    """Styled fragments of one mrkdwn text; markers are dropped, links become `text (url)`."""
    names = names or Names()
    out: list[Fragment] = []
    position = 0
    for match in _TOKEN.finditer(text):
        if match.start() > position:
            out.append((style, unescape(text[position : match.start()])))
        position = match.end()
        kind = match.lastgroup
        body = match.group(kind or 0)
        if kind == "pre":
            out.append((f"{style} class:pre".strip(), unescape(body)))
        elif kind == "code":
            out.append((f"{style} class:code".strip(), unescape(body)))
        elif kind == "angle":
            out.extend(_angle(body, names, style))
        elif kind in ("bold", "italic", "strike"):
            inner = {"bold": "bold", "italic": "italic", "strike": "strike"}[kind]
            out.extend(fragments(body, names, f"{style} {inner}".strip()))
    if position < len(text):
        out.append((style, unescape(text[position:])))
    return out


def _angle(body: str, names: Names, style: str) -> list[Fragment]:
    target, _, label = body.partition("|")
    mention = f"{style} class:mention".strip()
    if target.startswith("@"):
        return [(mention, f"@{label or target[1:]}")]
    if target.startswith("#"):
        return [(mention, f"#{label or names.channel(target[1:])}")]
    if target.startswith("!"):
        word = target[1:].split("^", 1)[0]
        return [(mention, unescape(label) if label else _SPECIAL.get(word, f"@{word}"))]
    url = unescape(target)
    permalink = _PERMALINK.match(url)
    if permalink:
        shown = names.message(permalink["channel"], permalink["ts"])
        return [(f"{style} class:link".strip(), shown or "an earlier message")]
    text = unescape(label)
    if url.startswith("mailto:"):
        return [(f"{style} class:link".strip(), text or url.removeprefix("mailto:"))]
    if not text or text == url:
        return [(f"{style} class:link".strip(), url)]
    return [(style, text), (f"{style} class:link".strip(), f" ({url})")]


def plain(text: str, names: Names | None = None) -> str:
    """The text a person reads, without any styling."""
    return "".join(t for _, t in fragments(text, names))


def table_fragments(table: Table, indent: str = "  ") -> list[Fragment]:
    """A table aligned by display width (emoji and CJK take two cells), header in bold."""
    widths = [get_cwidth(c) for c in table.columns]
    for row in table.rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], get_cwidth(cell))

    def line(cells: Sequence[str]) -> str:
        parts = []
        for i, cell in enumerate(cells):
            pad = " " * (widths[i] - get_cwidth(cell))
            parts.append(pad + cell if i in table.align_right else cell + pad)
        return (indent + "  ".join(parts)).rstrip()

    out: list[Fragment] = [("bold", line(table.columns) + "\n")]
    out.append(("class:rule", line(["─" * w for w in widths]) + "\n"))
    out.extend(("", line(row) + "\n") for row in table.rows)
    return out
