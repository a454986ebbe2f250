"""Small pieces with sharp edges: key format, path normalisation, route matching, usage bound."""

from __future__ import annotations

import pytest

from tollway.db.models import LATENCY_BOUNDS, latency_bucket
from tollway.gateway.recording.usage import UsageBuffer
from tollway.gateway.snapshot.routing import RouteTable, normalise_path
from tollway.keys import display_prefix, generate_key, has_valid_checksum, key_digest


def test_keys_are_prefixed_long_unique_and_checksummed() -> None:
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith("tw_") and len(key) == 49
        assert has_valid_checksum(key)
    key = keys.pop()
    typo = key[:10] + ("A" if key[10] != "A" else "B") + key[11:]
    assert not has_valid_checksum(typo)
    assert display_prefix(key) == key[:10]
    assert key_digest(key) == key_digest(key.encode()) and len(key_digest(key)) == 64


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/names/generate_name", b"/names/generate_name"),
        (b"/a//b///c", b"/a/b/c"),
        (b"/a/./b/.", b"/a/b/"),
        (b"/a/b/../c", b"/a/c"),
        (b"/a/%2E%2e/c", b"/c"),
        (b"/a/.%2e/c", b"/c"),
        (b"/a/%41", b"/a/%41"),  # other encodings are left alone
        (b"/..", None),
        (b"/a/../..", None),
        (b"/a%2fb", None),
        (b"/a%2Fb", None),
        (b"/a%5Cb", None),
        (b"/a\\b", None),
        (b"/a%00", None),
        (b"a/b", None),
    ],
)
def test_normalise_path(raw: bytes, expected: bytes | None) -> None:
    assert normalise_path(raw) == expected


def test_longest_prefix_wins_on_segment_boundaries() -> None:
    table: RouteTable[str] = RouteTable()
    table.add("/v1", "v1")
    table.add("/v1/names", "names")
    assert table.match(b"/v1/names/x") == ("names", b"/x")
    assert table.match(b"/v1/namesake") == ("v1", b"/namesake")
    assert table.match(b"/v1") == ("v1", b"/")
    assert table.match(b"/v2/names") is None


def test_usage_buffer_is_bounded_and_counts_what_it_drops() -> None:
    clock = iter(range(0, 10_000, 60))
    buffer = UsageBuffer(limit=3, clock=lambda: float(next(clock)))
    for _ in range(5):  # each call lands in a new minute, so a new row
        buffer.record(1, 1, 200, 10, 20, 1.0)
    assert len(buffer.rows) == 3
    assert buffer.dropped == 2


def test_usage_rows_merge_when_given_back() -> None:
    buffer = UsageBuffer(clock=lambda: 120.0)
    buffer.record(1, 2, 201, 5, 7, 1.5)
    taken = buffer.take()
    buffer.record(1, 2, 204, 1, 1, 0.5)
    buffer.record(1, 2, 101, 3, 4, 9000.0, (2, 5))  # a WebSocket session with its messages
    buffer.give_back(taken)
    # calls, bytes in, bytes out, latency sum, then calls per latency bucket: 0.5 ms is in
    # bucket 1 ([0.5, 1) ms), 1.5 ms in bucket 2 ([1, 2) ms); then messages in and out
    assert buffer.rows == {
        (1, 2, 2, 2): [2, 6, 8, 2.0, 0, 1, 1] + [0] * 15 + [0, 0],
        (1, 2, 2, 1): [1, 3, 4, 9000.0] + [0] * 15 + [1, 0, 0] + [2, 5],  # 9 s: bucket 15
    }


def test_latency_buckets_are_powers_of_two_milliseconds() -> None:
    cases = {0.0: 0, 0.49: 0, 0.5: 1, 0.99: 1, 1.0: 2, 3.9: 3, 4.0: 4, 1000.0: 11}
    cases |= {32_767.9: 16, 32_768.0: 17, 3_600_000.0: 17}
    assert {ms: latency_bucket(ms) for ms in cases} == cases
    for i, bound in enumerate(LATENCY_BOUNDS, start=1):  # a bound opens the next bucket
        assert latency_bucket(bound) == i and latency_bucket(bound * 0.999) == i - 1
