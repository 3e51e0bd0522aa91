"""The token rule: counting, cutting, chunking and a request's input tokens."""

import pytest

from backends import tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", 0), ("Hello", 1), ("Hello, world!", 4), ("  spaced   out  ", 2), ("snake_case42 x", 2), ("héllo wörld", 2)],
)
def test_count(text, expected):
    assert tokens.count(text) == expected


def test_cut_keeps_spacing_up_to_the_last_token():
    assert tokens.cut("one,  two three", 3) == "one,  two"
    assert tokens.cut("one two", 5) == "one two"
    assert tokens.cut("one two", 0) == ""


def test_chunks_rejoin_to_the_original():
    text = "The quick, brown fox — jumps over the lazy dog.  "
    pieces = list(tokens.chunks(text, 3))
    assert "".join(pieces) == text
    assert all(tokens.count(piece) <= 3 for piece in pieces)
    assert len(pieces) == 5


def test_input_tokens_cover_system_messages_and_tools():
    body = {
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi there"}, {"type": "image"}]}],
    }
    assert tokens.count_input(body) == 3 + 2 + 3  # "Be brief ." + "Hi there" + "[ image ]"
    with_tool = {**body, "tools": [{"name": "t", "input_schema": {"type": "object"}}]}
    assert tokens.count_input(with_tool) > tokens.count_input(body)


def test_cut_and_exceeds_agree_with_count_on_every_text():
    """Cutting matches the tokens one after another in one expression; it must find what counting finds."""
    texts = ["", " ", "word", "  two words ", "a,b", "héllo — wörld日本", "snake_case42!? x\n\ty", "..., ..."]
    for text in texts:
        every = [match.end() for match in tokens.CLASSIC.pattern.finditer(text)]
        for limit in range(-1, len(every) + 3):
            assert tokens.exceeds(text, limit) == (tokens.count(text) > limit), (text, limit)
            expected = "" if limit <= 0 else text[: every[limit - 1]] if limit <= len(every) else text
            assert tokens.cut(text, limit) == expected, (text, limit)


def test_a_long_text_is_cut_at_its_limit_without_splitting_a_word():
    text = "stream " * 150_000
    assert tokens.cut(text, 128_000) == "stream " * 127_999 + "stream"
    assert tokens.exceeds(text, 149_999) and not tokens.exceeds(text, 150_000)


def test_the_newer_family_splits_words_into_pieces_of_five_characters():
    newer = tokens.CLAUDE_4_7
    assert newer.count("Hello, Claude!") == 5 and tokens.CLASSIC.count("Hello, Claude!") == 4
    assert newer.cut("Hello, Claude!", 3) == "Hello, Claud"
    assert "".join(newer.chunks("interpretable systems", 2)) == "interpretable systems"
    assert not newer.exceeds("Claude", 2) and newer.exceeds("Claude", 1)


def test_the_newer_family_counts_english_prose_as_about_thirty_percent_more():
    prose = (  # the Zen of Python's first lines: 1.30; the README 1.22, the GPL 1.36, a text of long words 1.41
        "Beautiful is better than ugly. Explicit is better than implicit. Simple is better than complex. "
        "Complex is better than complicated. Flat is better than nested. Sparse is better than dense. "
        "Readability counts. Special cases aren't special enough to break the rules."
    )
    ratio = tokens.CLAUDE_4_7.count(prose) / tokens.CLASSIC.count(prose)
    assert 1.2 <= ratio <= 1.45, ratio
