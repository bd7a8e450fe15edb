"""The sphinx worker leaves shutdown to its parent, and never outlives it (issue #13).

# real-time: the slow test runs real worker processes and real signals (to the worker
# only, never to pytest's process group).
"""

from __future__ import annotations

import io
import os
import signal

import msgspec
import pytest
import trio

from adapters.recognizers._sphinx_worker import Close, serve
from adapters.recognizers.sphinx import SphinxRecognizer

SILENCE = bytes(3200)


@pytest.mark.slow
async def test_worker_ignores_interrupt_and_terminate_in_its_own_group() -> None:
    """SIGINT and SIGTERM do not stop a worker, which runs in a process group of its
    own; closing the recognizer does."""
    with trio.fail_after(60):
        async with SphinxRecognizer(workers=1, shutdown_grace=2.0) as recognizer:
            session = await recognizer.open_session(sample_rate=16000, language=None)
            (pid,) = recognizer.worker_pids()
            assert os.getpgid(pid) == pid != os.getpgrp()
            for signum in (signal.SIGINT, signal.SIGTERM):
                os.kill(pid, signum)
                assert await session.feed(SILENCE) == []  # answered: still alive
            assert recognizer.worker_pids() == [pid]
            assert await session.flush() == []
            await session.aclose()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # stopped and reaped by aclose()


class _GonePipe(io.RawIOBase):
    """A stdout whose reader has gone: every write is a broken pipe."""

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_worker_ends_quietly_when_its_parent_is_gone() -> None:
    """A reply that cannot be written (the parent died) ends ``serve`` without an
    exception, before it reads any further request."""
    body = msgspec.msgpack.encode(Close(1))
    frame = len(body).to_bytes(4, "big") + body
    stdin = io.BytesIO(frame * 2)
    serve(stdin, _GonePipe())
    assert stdin.tell() == len(frame)
