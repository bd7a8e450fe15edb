"""One worker process as the parent sees it, and what every file of a run shares.

:class:`Worker` holds the process, its free slots (files it asked for) and its
files in flight; :meth:`Worker.send` is the one locked write to its stdin, under
a deadline.
"""

from __future__ import annotations

import contextlib
import signal
from typing import TYPE_CHECKING, Final

import msgspec
import trio

from engine.shard._wire import Framer, FromWorker, ToWorker

if TYPE_CHECKING:
    from collections.abc import Sequence

    from engine.pipeline import FileStreamConfig

__all__ = ["SEND_TIMEOUT_S", "Worker", "file_template"]

SEND_TIMEOUT_S: Final = 10.0
"""A worker reads its stdin at all times; one that takes longer than this is hung."""
_READ_BYTES: Final = 1 << 16


class Worker:
    """One worker as the parent sees it: its process, slots and files in flight."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.pid = process.pid
        self.credits = 0  # files it asked for and has not been given
        self.greeted = False  # said Hello: its imports are done
        self.ready = False  # asked for files: Setup taken
        self.alive = True
        self.inflight: dict[int, str] = {}  # index -> stream id
        self.handed = 0  # files it was given, for the log
        self.framer = Framer(FromWorker)  # frames ours, parses theirs
        self._lock = trio.Lock()

    async def send(self, message: ToWorker) -> None:
        """Write one message (Raises: trio.BrokenResourceError, trio.TooSlowError)."""
        stdin = self.process.stdin
        assert stdin is not None
        with trio.fail_after(SEND_TIMEOUT_S):
            async with self._lock:
                await stdin.send_all(self.framer.frame(message))

    async def read(self) -> list[FromWorker]:
        """The worker's next messages (at least one), or none at the end of its pipe.

        Raises:
            ProtocolViolation: it sent something that is not a message.
            trio.BrokenResourceError: the pipe broke.
        """
        stdout = self.process.stdout
        assert stdout is not None
        while True:
            self.framer.receive_data(await stdout.receive_some(_READ_BYTES))
            got: list[FromWorker] = list(self.framer.messages())
            if got or self.framer.closed:
                return got

    async def tell(self, message: ToWorker) -> None:
        """:meth:`send`, where a dead or hung worker is left to its reader to report."""
        if not self.alive:
            return
        try:
            await self.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            self.kill()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    def how_it_ended(self) -> str:
        code = self.process.returncode
        if code is None:
            return "stopped answering"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with status {code}"


def file_template(configs: Sequence[FileStreamConfig]) -> FileStreamConfig:
    """What every file shares (``configs[0]`` without its own fields)."""
    first = configs[0]
    template = msgspec.structs.replace(
        first,
        path="",
        output_stem=None,
        session=msgspec.structs.replace(first.session, stream=""),
    )
    for config in configs:
        own = msgspec.structs.replace(
            template,
            path=config.path,
            output_stem=config.output_stem,
            session=msgspec.structs.replace(template.session, stream=config.session.stream),
        )
        if own != config:
            raise ValueError(f"{config.path}: settings differ from the other files'")
    return template
