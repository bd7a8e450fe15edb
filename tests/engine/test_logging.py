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


class TestBoundContext:
    """engine.logging.BoundContext: structlog's bound_contextvars without a generator."""

    @pytest.fixture(autouse=True)
    def _clean_context(self) -> None:
        structlog.contextvars.clear_contextvars()

    def test_binds_for_the_block_and_restores_what_was_there(self) -> None:
        """Inside, the values are bound; after, new keys are gone and old ones are back."""
        structlog.contextvars.bind_contextvars(stream="outer", other=1)
        with steno_logging.BoundContext(stream="s1", model="m"):
            assert structlog.contextvars.get_contextvars() == {
                "stream": "s1",
                "model": "m",
                "other": 1,
            }
        assert structlog.contextvars.get_contextvars() == {"stream": "outer", "other": 1}

    def test_does_as_structlog_does(self) -> None:
        """Nested with structlog's own, in either order, the context is the same at every step."""
        seen: list[dict[str, object]] = []
        ours, theirs = steno_logging.BoundContext, structlog.contextvars.bound_contextvars
        for first, second in ((ours, theirs), (theirs, ours), (theirs, theirs)):
            structlog.contextvars.clear_contextvars()
            steps = []
            with first(a=1, b=2):
                steps.append(structlog.contextvars.get_contextvars())
                with second(b=3, c=4):
                    steps.append(structlog.contextvars.get_contextvars())
                steps.append(structlog.contextvars.get_contextvars())
            steps.append(structlog.contextvars.get_contextvars())
            seen.append({"steps": steps})
        assert seen[0] == seen[1] == seen[2]

    def test_logs_carry_the_bound_values(self) -> None:
        """A line logged inside the block carries the values (merge_contextvars)."""
        with structlog.testing.capture_logs(
            processors=[structlog.contextvars.merge_contextvars]
        ) as logs:
            with steno_logging.BoundContext(stream="s2"):
                structlog.get_logger("t").info("inside")
            structlog.get_logger("t").info("outside")
        assert [log.get("stream") for log in logs] == ["s2", None]

    def test_entered_once(self) -> None:
        """It keeps no values after entering, so a second entry is refused."""
        bound = steno_logging.BoundContext(stream="s3")
        with bound:
            pass
        with pytest.raises(RuntimeError), bound:
            pass
