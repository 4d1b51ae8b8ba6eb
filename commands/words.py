"""How counts, notes and clipped texts read to people: "1 account", "3 accounts", "Done… (cut)".

Small on purpose: the bot's nouns are all regular English plurals, so a counting function of two
lines serves where a dependency such as `inflect` would add a whole grammar for one suffix.
"""

from __future__ import annotations

import re
import textwrap

ELLIPSIS = "…"
_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# Words that carry no news on their own: a provider's note made only of the headline's words
# and these says nothing the headline did not.
_FILLER = frozenset(
    {"a", "an", "the", "of", "for", "to", "is", "was", "has", "been", "have", "successfully"}
)


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 account`, `0 accounts`, `2 entries` (give `many` where adding "s" is wrong)."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"


def adds_to(note: str, headline: str) -> bool:
    """Whether a provider's note tells more than the headline already says.

    "Customer e-mail confirmed." under "E-mail of customer 10223 confirmed." repeats it;
    "E-mail already confirmed." does not (it adds "already")."""
    said = set(_WORD.findall(headline.lower()))
    return bool(set(_WORD.findall(note.lower())) - said - _FILLER)


def clip(text: str, width: int) -> str:
    """`text` on one line, at most `width` characters, cut between words with an ellipsis.

    `textwrap.shorten` does the cutting; a single word longer than `width` (a URL, an id list)
    is cut inside itself rather than dropped whole."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    short = textwrap.shorten(flat, width=width, placeholder=ELLIPSIS)
    if short == ELLIPSIS or len(short) < width // 2:
        return flat[: max(width - 1, 0)].rstrip() + ELLIPSIS
    return short
