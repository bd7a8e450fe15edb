"""A :class:`~adapters.dashscope.connection.Connection` on the inference ("task") protocol.

paraformer, fun-asr and gummy: ``run-task`` → ``task-started``, binary audio,
``finish-task`` → ``task-finished``. ``result-generated`` payloads become the
protocol-neutral results of :mod:`engine.results` (:func:`results_of`); the
task's failures become ``engine.errors`` types, each with its ``close_reason``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from engine.errors import Disconnected, RemoteProtocolError, TaskFailed
from engine.results import Heard, Result, Translated

from . import messages as m
from .connection import Connection, LinkSettings
from .inference import InferenceClient

if TYPE_CHECKING:
    from .transport import Dialer

__all__ = ["InferenceConnection", "results_of"]

log = structlog.get_logger("steno.session")


class InferenceConnection(Connection[m.ClientCommand, m.ClientEvent]):
    """One inference task. ``parameters`` go into ``run-task`` as they are."""

    def __init__(
        self,
        *,
        settings: LinkSettings,
        dial: Dialer,
        task_id: str,
        model: str,
        parameters: dict[str, Any],
    ) -> None:
        super().__init__(settings=settings, dial=dial, task_id=task_id, core=InferenceClient())
        self._model = model
        self._parameters = parameters

    async def _start(self) -> None:
        await self._command(m.RunTask(self.task_id, self._model, self._parameters))
        await self._wait_started()

    def _audio(self, pcm: bytes) -> m.SendAudio:
        return m.SendAudio(pcm)

    def _finish_command(self) -> m.FinishTask:
        return m.FinishTask()

    def _interpret(self, event: m.ClientEvent) -> list[Result]:
        match event:
            case m.ResultGenerated(_, output):  # first: nearly every event is one
                return results_of(output)
            case m.TaskStarted():
                self.started.set()
            case m.TaskFinished():
                self._mark_finished()
            case m.TaskFailed(_, code, message):
                self.close_reason = f"task-failed: {code}"
                raise TaskFailed(code, message)
            case m.ConnectionClosed():
                self.close_reason = "connection-lost"
                raise Disconnected("the server closed the connection before task-finished")
            case m.ProtocolViolation(reason):
                self.close_reason = "protocol-error"
                raise RemoteProtocolError(f"the server broke the protocol: {reason}")
            case m.UnknownEvent(name):
                log.warning("session.unknown_event", event_name=name)
        return []


def results_of(output: m.Output) -> list[Result]:
    """The neutral results in a result-generated payload (paraformer, fun-asr and gummy shapes)."""
    results: list[Result] = []
    for s in (output.sentence, output.transcription):
        if s is not None:
            results.append(_heard(s))
    for tr in output.translations or ():
        results.append(
            Translated(
                tr.lang,
                tr.is_final,
                tr.begin_time,
                tr.end_time if tr.is_final else None,
                tr.text,
                tr.stash.text if tr.stash is not None else "",
                key=str(tr.sentence_id),
            )
        )
    return results


def _heard(s: m.WireSentence) -> Heard:
    final = s.is_final
    stash = s.stash.text if s.stash is not None else ""
    pre_end = bool(s.vad_pre_end) and not s.pre_end_failed
    # The words were decoded as HeardWords (WireWord is one): no Python per word.
    words, key = s.words, str(s.sentence_id)
    end = s.end_time if final else None
    return Heard(final, s.begin_time, end, s.text, words, stash, key=key, pre_end=pre_end)
