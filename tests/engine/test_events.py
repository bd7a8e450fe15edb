"""Event schema evolution: new fields have defaults, old JSONL lines still decode."""

from __future__ import annotations

import pytest

from engine.events import (
    AudioSkipped,
    StreamEnded,
    StreamStarted,
    decode_jsonl_line,
    encode_jsonl_line,
)


class TestSchemaEvolution:
    def test_an_old_stream_started_line_decodes(self) -> None:
        """A line written before started_at existed decodes with it empty."""
        old = b'{"type":"StreamStarted","stream":"a","t":0.0,"source":"x","model":"m","rate":16000}'
        event = decode_jsonl_line(old)
        assert isinstance(event, StreamStarted)
        assert event.started_at == ""

    def test_an_old_stream_ended_line_decodes(self) -> None:
        event = decode_jsonl_line(b'{"type":"StreamEnded","status":"ok","audio_ms":5}')
        assert isinstance(event, StreamEnded)
        assert (event.audio_ms, event.audio_skipped_ms) == (5, 0)

    def test_new_events_round_trip(self) -> None:
        events = [
            StreamStarted("push", "m", 16000, started_at="2023-11-14T22:13:20.000Z", stream="a"),
            AudioSkipped(100, 16100, "suspended", stream="a", t=1.5),
            StreamEnded("ok", audio_skipped_ms=1000, stream="a"),
        ]
        assert [decode_jsonl_line(encode_jsonl_line(e)) for e in events] == events

    def test_a_skipped_span_cannot_run_backwards(self) -> None:
        with pytest.raises(ValueError, match="cannot end before"):
            AudioSkipped(10, 5, "x")
