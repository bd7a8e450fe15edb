"""What an inference connection sends for its tasks, in the order its core made it.

Every outgoing frame of ``/api-ws/v1/inference`` is made by the connection's sans-IO
core (:class:`~adapters.dashscope.inference.InferenceServer`) only when the socket's one
send path (:class:`~.server_socket.ServerSocket`) takes it, so frames hit the wire in the
order the core produced them. A task that ended (its ``task-finished`` or
``task-failed`` was made) sends nothing more: a later frame for it is dropped unmade.

:class:`TaskOutput` is that send path for one connection, used by the reader
(:mod:`.inference`) and the recognizer tasks (:mod:`.inference_task`) alike, and the
place where what :func:`~.inference_intake.take_audio` left to do is done: a heartbeat
result, a failure (``task-failed``, then the connection ends), a silence drop.

Cancellation: :meth:`TaskOutput.send` and :meth:`TaskOutput.fail` wait only for the
socket's send path (see :class:`~.server_socket.ServerSocket`); everything else here is
synchronous and never a checkpoint.

Errors: none raised; a frame the client can no longer get marks its task
``"closed by client"``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, final

from adapters.dashscope import messages as m

from .inference_intake import Dropped, Failed, Heartbeat, queue_audio

if TYPE_CHECKING:
    from collections.abc import Callable

    from adapters.dashscope.inference import InferenceServer

    from ._hub_reader import Follow
    from .config import SimConfig
    from .inference_intake import Answer
    from .inference_task import Task
    from .server_socket import ServerSocket

__all__ = ["TaskOutput"]


@final
class TaskOutput:
    """One inference connection's frames onto its socket, dropped once their task ended.

    Args:
        core: the connection's sans-IO core (it makes each frame as it goes out).
        socket: the connection's one send path.
        config: the queue's bound (``max_audio_queue_s``), for a heartbeat's audio.
    """

    def __init__(self, core: InferenceServer, socket: ServerSocket, config: SimConfig) -> None:
        self._core = core
        self._socket = socket
        self._config = config

    async def send(self, command: m.ServerCommand, task: Task | None = None) -> None:
        """Send the core's frame for ``command``; dropped if ``task`` already ended."""
        if not await self._socket.send(self._framer(command, task)) and task is not None:
            task.outcome = "closed by client"

    def send_now(self, command: m.ServerCommand, task: Task | None = None) -> bool:
        """:meth:`send` without awaiting; False if it cannot go now (nothing was done)."""
        sent = self._socket.send_nowait(self._framer(command, task))
        if sent is None:
            return False
        if not sent and task is not None:
            task.outcome = "closed by client"
        return True

    async def fail(self, task: Task, code: str, message: str) -> None:
        """Send ``task-failed`` for the open task, then end the connection."""
        task.outcome = code
        task.cancel()
        await self.send(m.FailTask(code, message), task)
        self._socket.shutdown()

    def settle(self, task: Task, answer: Answer) -> Follow | None:
        """Do at once what ``take_audio`` left for ``task``, or say what to await for it.

        Not a checkpoint: a silence drop shuts the socket down now.

        Returns:
            None when nothing is left, else the follow-up to await (False: the
            connection ends).
        """
        if answer is None:
            return None
        if isinstance(answer, Dropped):
            self._socket.shutdown(1000, answer.reason)
            return _ended
        return functools.partial(self._finish, task, answer)

    async def _finish(self, task: Task, answer: Failed | Heartbeat) -> bool:
        if isinstance(answer, Heartbeat):
            await self.send(answer.command, task)
            failed = queue_audio(task, answer.pcm, self._config)
            if failed is None:
                return True
            answer = failed
        await self.fail(task, answer.code, answer.message)
        return False

    def _framer(self, command: m.ServerCommand, task: Task | None) -> Callable[[], str | None]:
        def frame() -> str | None:
            if task is not None and task.ended:
                return None
            made: str | None = self._core.send(command)
            if task is not None and isinstance(command, m.FinishTaskReply | m.FailTask):
                task.ended = True
            return made

        return frame


async def _ended() -> bool:
    return False
