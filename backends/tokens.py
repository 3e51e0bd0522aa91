"""The project's token rules, one per tokenizer family, used for usage, count_tokens, max_tokens and stream chunks.

`classic`: a token is a word — a run of letters, digits and underscores — or
any other single character that is not white space. So "Hello, world!" is four
tokens: `Hello` `,` `world` `!`.

`claude-4-7`, the newer tokenizer of Claude Opus 4.7 and later, which counts
the same text as about 30% more tokens: a word is split into pieces of at most
five characters, so `Claude` is two tokens (`Claud` `e`) and "Hello, Claude!"
five. On English text that is 22–41% more than `classic` (the Zen of Python 30%).

Each rule is deterministic and cheap, which is all a stand-in needs; neither
tries to match the real tokenizers' numbers, but the same model always counts
alike, in count_tokens, usage and max_tokens. A model's family is its
catalogue entry's `tokenizer` (backends/catalogue.py).

A request's input tokens are the tokens of its plain-text view (`text.py`):
the system prompt, every message, and the tools given (names, descriptions
and input schemas as compact JSON).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from backends import text
from backends.wire import compact_json


class Tokenizer:
    """One family's token rule: a token is one match of `pattern`."""

    def __init__(self, name: str, pattern: str) -> None:
        self.name = name
        self.pattern = re.compile(pattern)

    def count(self, value: str) -> int:
        """How many tokens `value` holds."""
        # subn's count of replacements is the count of matches, made in C without a Match object each:
        # about twice as fast as counting finditer's matches, for a short text as for a 1 MB prompt.
        return self.pattern.subn("", value)[1]

    def cut(self, value: str, limit: int) -> str:
        """The first `limit` tokens of `value`, with the spacing between them kept."""
        if limit <= 0:
            return ""
        first = self._first_tokens(value, limit)
        return value[: first.end()] if first else value

    def exceeds(self, value: str, limit: int) -> bool:
        """Whether `value` holds more than `limit` tokens: for a long text, a third of the time counting them takes."""
        return limit < 0 or self._first_tokens(value, limit + 1) is not None

    def _first_tokens(self, value: str, limit: int) -> re.Match[str] | None:
        """The first `limit` (one or more) tokens of `value` as one match, or None when it holds fewer.

        One regular expression, `limit` tokens each after its white space, matched in C: for a 1 MB prompt cut at
        128,000 tokens, three times quicker than a loop over finditer's matches. Possessive (`++`, `{n}+`), so that
        no token is split to make up the count, and a text with fewer tokens fails at once. Compiled once per
        limit (some 0.2 ms; `re` keeps the last 512), and only for a text longer than the limit.
        """
        if limit > len(value):  # a text holds at most one token a character
            return None
        return re.match(rf"(?:\s*+(?:{self.pattern.pattern})){{{limit}}}+", value)

    def chunks(self, value: str, per_chunk: int) -> Iterator[str]:
        """`value` in consecutive pieces of `per_chunk` tokens; joined, they give `value` back."""
        start = 0
        for seen, match in enumerate(self.pattern.finditer(value), start=1):
            if seen % per_chunk == 0:
                yield value[start : match.end()]
                start = match.end()
        if start < len(value):
            yield value[start:]

    def count_input(self, body: Mapping[str, Any]) -> int:
        """The input tokens of a create-message or count-tokens request body."""
        parts = [text.system_text(body.get("system"))]
        # A beta system message may carry only an output_config, no content.
        parts += [text.content_text(message.get("content", "")) for message in body["messages"]]
        parts += [compact_json(tool) for tool in body.get("tools") or ()]
        return sum(self.count(part) for part in parts)


CLASSIC = Tokenizer("classic", r"\w++|[^\w\s]")
CLAUDE_4_7 = Tokenizer("claude-4-7", r"\w{1,5}+|[^\w\s]")
#: The families by the name a catalogue entry gives.
FAMILIES = {tokenizer.name: tokenizer for tokenizer in (CLASSIC, CLAUDE_4_7)}

# The classic rule, for what no model's family decides (a model the catalogue lacks, a stream's chunking).
count = CLASSIC.count
cut = CLASSIC.cut
exceeds = CLASSIC.exceeds
chunks = CLASSIC.chunks
count_input = CLASSIC.count_input
