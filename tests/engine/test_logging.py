"""engine.logging.configure: where lines go, what they look like, and that secrets never show."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from engine import logging as steno_logging

SECRET = "sk-logging-test-0b9e"


def configure(**kw: object) -> None:
    steno_logging.configure(**kw)  # type: ignore[arg-type]
    # Tests never cache loggers: module-level proxies would keep this configuration.
    structlog.configure(cache_logger_on_first_use=False)


class TestConfigure:
    def test_json_lines_to_a_text_stream(self) -> None:
        """JSON to a stream without a binary buffer goes through its text layer."""
        out = io.StringIO()
        configure(json=True, stream=out)
        structlog.get_logger("t").info("thing.happened", n=3, api_key=SECRET, token=SECRET)
        (line,) = out.getvalue().splitlines()
        record = json.loads(line)
        assert (record["event"], record["n"], record["level"]) == ("thing.happened", 3, "info")
        assert record["api_key"] == record["token"] == "***"
        assert record["timestamp"].endswith("Z")
        assert SECRET not in out.getvalue()

    def test_json_lines_to_a_binary_buffer(self) -> None:
        """A stream with a binary buffer (stdout, stderr) is written as bytes, in order."""
        raw = io.BytesIO()
        out = io.TextIOWrapper(raw, encoding="utf-8")
        configure(json=True, stream=out, level=logging.WARNING)
        log = structlog.get_logger("t")
        log.info("not.shown")
        log.warning("first", authorization=f"Bearer {SECRET}")
        log.error("second")
        lines = [json.loads(line) for line in raw.getvalue().splitlines()]
        assert [r["event"] for r in lines] == ["first", "second"]
        assert lines[0]["authorization"] == "***"

    def test_console_lines_for_people(self) -> None:
        out = io.StringIO()
        configure(json=False, stream=out)
        structlog.get_logger("t").info("ws.connected", secret=SECRET, url="wss://x")
        text = out.getvalue()
        assert "ws.connected" in text and "url=wss://x" in text
        assert SECRET not in text and "\x1b[" not in text  # no colours off a terminal

    def test_stderr_by_default(self, capsys: pytest.CaptureFixture[str]) -> None:
        configure(json=True)
        structlog.get_logger("t").info("to.stderr")
        captured = capsys.readouterr()
        assert "to.stderr" in captured.err and not captured.out
