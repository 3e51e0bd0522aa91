"""The SSE codec of backends/wire.py: events cut anywhere across chunks, bounded, malformed ones refused."""

from __future__ import annotations

import pytest

from backends.wire import MalformedEvent, decode_events, encode_event

EVENTS = [
    {"type": "message_start", "message": {"id": "msg_1"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "two\nlines"}},
    {"type": "message_stop"},
]
WIRE = b"".join(encode_event(event) for event in EVENTS)


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(WIRE)])
def test_events_cut_anywhere_decode_whole(size):
    for wire in (WIRE, WIRE.replace(b"\n", b"\r\n")):  # \r\n line ends too, split between chunks or not
        chunks = [wire[at : at + size] for at in range(0, len(wire), size)]
        assert list(decode_events(chunks)) == EVENTS


def test_comments_and_events_without_data_are_skipped():
    assert list(decode_events([b": keep-alive\n\nevent: ping\n\n", WIRE])) == EVENTS


def test_an_event_longer_than_the_limit_is_refused_before_it_ends():
    endless = (b'data: {"type": "ping", "pad": "' + b"a" * 100 for _ in range(1000))
    with pytest.raises(MalformedEvent, match="longer than the limit of 5000 bytes"):
        list(decode_events(endless, max_event_bytes=5000))


def test_events_within_the_limit_pass():
    assert list(decode_events([WIRE], max_event_bytes=max(len(encode_event(event)) for event in EVENTS))) == EVENTS


def test_an_event_arriving_whole_is_held_to_the_limit_too():
    with pytest.raises(MalformedEvent, match="longer than the limit"):
        list(decode_events([WIRE], max_event_bytes=20))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"type": "ping", "x": "\xff"}', "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[" * 100_000, "not JSON"),  # nested too deep for the parser
        (b'{"index": 0}', "not a JSON object with a type"),
        (b'["ping"]', "not a JSON object with a type"),
        (b'{"type": 7}', "not a JSON object with a type"),
    ],
)
def test_malformed_data_is_refused_quoting_nothing_of_it(data, reason):
    with pytest.raises(MalformedEvent, match=reason) as error:
        list(decode_events([b"data: " + data + b"\n\n"]))
    assert "ping" not in str(error.value) and "index" not in str(error.value)
