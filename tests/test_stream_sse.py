"""Sans-I/O SSE framing: payload layout, the streamKey splice, gzip flushed per event, Accept-Encoding."""

from __future__ import annotations

import json
import zlib

import pytest
from test_stream_fakes import SseReader, parse_event

from qsse.qbt.maindata import Diff
from qsse.qbt.status import Health
from qsse.stream.activity import ActivityHub, diff_activity, health_activity
from qsse.stream.sse import Encoder, Meta, accepts_gzip, encode_key, frame, retry_seconds

T = 1_764_862_070.25  # 2025-12-04T15:27:50.250Z


def test_frame_keys_in_protocol_order_and_key_spliced_last_in_meta() -> None:
    template = frame("delta", Meta(3, T, rid=7, full_update=True), data={"total": 1}, delta={"order": ["a"]})
    name, payload = parse_event(template.render(encode_key('k "1"')).rstrip(b"\n"))
    assert name == "delta"
    assert list(payload) == ["type", "data", "delta", "meta"]
    assert payload["meta"] == {
        "instanceId": 3, "rid": 7, "fullUpdate": True, "timestamp": "2025-12-04T15:27:50.250Z", "streamKey": 'k "1"',
    }
    assert list(payload["meta"])[-1] == "streamKey"


def test_meta_omits_zero_rid_false_full_update_and_absent_fields() -> None:
    _, payload = parse_event(frame("update", Meta(0, T), data={}).render(b'"x"').rstrip(b"\n"))
    assert payload["meta"] == {"instanceId": 0, "timestamp": "2025-12-04T15:27:50.250Z", "streamKey": "x"}


def test_stream_error_has_error_after_meta() -> None:
    meta = Meta(2, T, last_successful_sync=T - 60, retry_in_seconds=retry_seconds(7.2))
    raw = frame("stream-error", meta, error="Sync failed (x); retrying in 8s").render(b'"s"')
    assert raw.endswith(b"\n\n") and raw.count(b"\n") == 3
    _, payload = parse_event(raw.rstrip(b"\n"))
    assert list(payload) == ["type", "meta", "error"]
    assert payload["meta"]["retryInSeconds"] == 8
    assert payload["meta"]["lastSuccessfulSync"] == "2025-12-04T15:26:50.250Z"
    assert payload["error"] == "Sync failed (x); retrying in 8s"


def test_render_without_key_is_valid_json() -> None:
    _, payload = parse_event(frame("heartbeat", Meta(0, T)).render_without_key().rstrip(b"\n"))
    assert payload == {"type": "heartbeat", "meta": {"instanceId": 0, "timestamp": "2025-12-04T15:27:50.250Z"}}


def test_data_line_is_one_line_even_with_newlines_in_strings() -> None:
    raw = frame("update", Meta(1, T), data={"name": "a\nb"}).render(b'"k"')
    assert raw.count(b"\n") == 3  # event line, data line, blank line


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (["gzip"], True),
        (["GZip"], True),
        (["deflate, gzip;q=0.5"], True),
        (["br", "gzip"], True),  # several header lines
        (["gzip;q=0"], False),
        (["gzip; q=0.000"], False),
        (["x-gzip"], False),
        (["*"], False),
        (["identity"], False),
        ([], False),
        (["deflate , gzip ; q=1.0"], True),
    ],
)
def test_accepts_gzip(headers: list[str], expected: bool) -> None:
    assert accepts_gzip(headers) is expected


def test_gzip_stream_decodes_event_by_event() -> None:
    encoder = Encoder(gzip=True)
    inflate = zlib.decompressobj(31)
    events = [frame("heartbeat", Meta(i, T)).render(b'"k"') for i in range(5)]
    for i, event in enumerate(events):
        # Each chunk alone completes its event: nothing is held back in the compressor.
        assert inflate.decompress(encoder.encode([event])) == event, i
    assert inflate.decompress(encoder.encode(events[:2])) == events[0] + events[1]
    inflate.decompress(encoder.finish())
    assert inflate.eof
    assert encoder.finish() == b""


def test_identity_encoder_passes_bytes_through() -> None:
    encoder = Encoder(gzip=False)
    assert encoder.encode([b"a", b"b"]) == b"ab"
    assert encoder.finish() == b""


def test_sse_reader_helper_handles_split_chunks() -> None:
    raw = frame("init", Meta(1, T, full_update=True), data={"x": 1}).render(b'"k"')
    reader = SseReader()
    assert reader.feed(raw[:10]) == []
    [(name, payload)] = reader.feed(raw[10:])
    assert name == "init" and payload["data"] == {"x": 1}


class _Listener:
    def __init__(self, room: int) -> None:
        self.room = room
        self.events: list[bytes] = []

    def offer_activity(self, event: bytes) -> bool:
        if len(self.events) >= self.room:
            return False
        self.events.append(event)
        return True


def test_activity_hub_encodes_once_and_drops_for_full_listeners_only() -> None:
    hub = ActivityHub(clock=lambda: T)
    roomy, tight = _Listener(10), _Listener(1)
    hub.add(roomy)
    hub.add(tight)
    assert hub.publish("torrent.added", 3, "abc") == 2
    assert hub.publish("config.reloaded") == 1
    assert (hub.published, hub.dropped) == (3, 1)
    name, payload = parse_event(roomy.events[0].rstrip(b"\n"))
    assert name == "activity"
    assert payload == {"type": "activity", "activity": {
        "kind": "torrent.added", "instanceId": 3, "resourceId": "abc", "timestamp": "2025-12-04T15:27:50.250Z"}}
    assert json.loads(roomy.events[1].split(b"data: ")[1])["activity"] == {
        "kind": "config.reloaded", "timestamp": "2025-12-04T15:27:50.250Z"}
    assert roomy.events[0] is tight.events[0]
    hub.discard(tight)
    assert hub.listener_count == 1


def test_health_transitions() -> None:
    assert health_activity(Health.IDLE, Health.SYNCING) == "instance.connected"
    assert health_activity(Health.DOWN, Health.SYNCING) == "instance.connected"
    assert health_activity(Health.SYNCING, Health.DOWN) == "instance.disconnected"
    assert health_activity(Health.IDLE, Health.DOWN) is None
    assert health_activity(Health.SYNCING, Health.AUTH_FAILED) == "instance.auth_failed"
    assert health_activity(Health.SYNCING, Health.SYNCING) is None


def test_diff_activity_skips_the_initial_merge() -> None:
    first = Diff(full_update=True, initial=True, added=frozenset({"a"}))
    assert list(diff_activity(first)) == []
    later = Diff(full_update=False, initial=False, added=frozenset({"b", "a"}), completed=frozenset({"c"}),
                 removed=frozenset({"d"}))
    assert list(diff_activity(later)) == [
        ("torrent.added", "a"), ("torrent.added", "b"), ("torrent.completed", "c"), ("torrent.removed", "d"),
    ]
