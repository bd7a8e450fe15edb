"""An offline English recognizer: pocketsphinx in a pool of worker processes.

pocketsphinx holds the GIL while it decodes, so it never runs in the event loop's
process. Each worker (:mod:`._sphinx_worker`) is started lazily and serves many
sessions over a pipe of length-prefixed msgpack frames; a new session goes to the
least-loaded worker. One request is in flight per worker at a time (a lock per
worker), and every wait has a deadline.

Accuracy is modest (about 5-18 % WER on clear synthetic speech, far worse on
expressive speech): this is the works-offline fallback, not a quality backend. The
model is US English at 16 kHz; other rates are resampled in the worker.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn, final

import msgspec
import trio

from adapters.children import open_child
from engine.errors import LocalProtocolError, ServerError

from ._sphinx_worker import MAX_FRAME, Close, Feed, Flush, Open, Reply, Request

if TYPE_CHECKING:
    from .base import Hypothesis

__all__ = ["RecognizerError", "SphinxRecognizer", "SphinxSession"]

_WORKER_MODULE: Final = "adapters.recognizers._sphinx_worker"
# The directory holding the ``adapters`` package, so the worker imports it from any cwd.
_IMPORT_ROOT: Final = str(Path(__file__).resolve().parents[2])


class RecognizerError(ServerError):
    """The recognizer failed: a worker crashed, hung, or rejected a request."""


class _Worker:
    """One worker process and the single request/response lane to it."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self.process = process
        self.sessions = 0
        self.failure: str | None = None  # set once the worker is unusable; sticky
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._lock = trio.Lock()
        self._buffer = bytearray()
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(Reply)

    async def request(self, request: Request, *, limit_s: float) -> Reply:
        """Send one request and wait at most ``limit_s`` seconds for its reply.

        Cancellation: waiting for the lock can be cancelled; the exchange itself is
        shielded (bounded by the timeout), so a reply is never left in the pipe.

        Raises:
            RecognizerError: the worker died, did not answer in time, or sent garbage;
                it is killed and every later request fails at once.
        """
        async with self._lock:
            if self.failure is not None:
                raise RecognizerError(self.failure)
            with trio.CancelScope(shield=True):
                reply = await self._exchange(request, limit_s)
        return reply

    async def _exchange(self, request: Request, limit_s: float) -> Reply:
        try:
            with trio.fail_after(limit_s):
                payload = self._encoder.encode(request)
                await self._stdin.send_all(len(payload).to_bytes(4, "big") + payload)
                return self._decoder.decode(await self._receive_frame())
        except trio.TooSlowError as exc:
            await self._fail(f"did not answer within {limit_s:g} s", exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError, EOFError) as exc:
            await self._fail("exited", exc)
        except msgspec.DecodeError as exc:
            await self._fail(f"sent an unreadable reply ({exc})", exc)

    async def _receive_frame(self) -> bytes:
        while True:
            if len(self._buffer) >= 4:
                size = int.from_bytes(self._buffer[:4], "big")
                if size > MAX_FRAME:
                    raise msgspec.DecodeError(f"frame of {size} bytes")
                if len(self._buffer) >= 4 + size:
                    body = bytes(self._buffer[4 : 4 + size])
                    del self._buffer[: 4 + size]
                    return body
            chunk = await self._stdout.receive_some(1 << 16)
            if not chunk:
                raise EOFError
            self._buffer += chunk

    async def _fail(self, what: str, exc: BaseException) -> NoReturn:
        self.process.kill()
        with trio.move_on_after(1.0):
            await self.process.wait()
        code = self.process.returncode
        status = "" if code is None else f", exit status {code}"
        self.failure = f"sphinx worker {self.process.pid} {what}{status}"
        raise RecognizerError(self.failure) from exc

    async def stop(self, grace: float) -> None:
        """Close stdin, give the worker ``grace`` seconds to exit, then kill it.

        Cancellation: shielded; returns within about ``2 * grace`` seconds.
        """
        self.failure = self.failure or "sphinx recognizer closed"
        with trio.CancelScope(shield=True):
            try:
                await self._stdin.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            with trio.move_on_after(grace):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                with trio.move_on_after(grace):
                    await self.process.wait()
            await self._stdout.aclose()


@final
class SphinxSession:
    """One task's recognition in a worker. Not safe for concurrent use."""

    def __init__(self, recognizer: SphinxRecognizer, worker: _Worker, sid: int) -> None:
        self._recognizer = recognizer
        self._worker = worker
        self._sid = sid
        self._flushed = False
        self._closed = False

    async def feed(self, pcm: bytes) -> list[Hypothesis]:
        """Send audio to the worker; return its partials and finals.

        Raises:
            RecognizerError: the worker crashed, hung or rejected the audio.
            LocalProtocolError: the session is closed or already flushed.
        """
        if self._closed or self._flushed:
            raise LocalProtocolError("feed() after flush() or aclose()")
        return await self._call(Feed(self._sid, pcm))

    async def flush(self) -> list[Hypothesis]:
        """End of audio: finals of any pending speech. A second call returns ``[]``."""
        if self._closed:
            raise LocalProtocolError("flush() after aclose()")
        if self._flushed:
            await trio.lowlevel.checkpoint()
            return []
        self._flushed = True
        return await self._call(Flush(self._sid))

    async def aclose(self) -> None:
        """Release the session's decoder in the worker. Idempotent; never raises
        :class:`RecognizerError` (a dead worker has nothing left to release)."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        self._worker.sessions -= 1
        try:
            await self._call(Close(self._sid))
        except RecognizerError:
            pass

    async def _call(self, request: Request) -> list[Hypothesis]:
        recognizer = self._recognizer
        limit_s = (
            recognizer.open_timeout if isinstance(request, Open) else recognizer.request_timeout
        )
        reply = await self._worker.request(request, limit_s=limit_s)
        if reply.error is not None:
            raise RecognizerError(f"sphinx worker rejected {type(request).__name__}: {reply.error}")
        return reply.hypotheses


@final
class SphinxRecognizer:
    """A :class:`~.base.Recognizer` backed by pocketsphinx worker processes.

    Args:
        workers: most worker processes to run (default: CPU count). Each is started on
            demand, when every running worker already has a session.
        request_timeout: longest wait for the reply to a feed, flush or close; a worker
            that misses it is killed.
        open_timeout: the same for opening a session, which may include a new worker's
            start-up (imports, about 0.3 s when idle). A session's first speech loads a
            decoder (about 0.5 s) unless its worker has an idle one.
        shutdown_grace: how long :meth:`aclose` waits for a worker to exit before
            killing it.

    Each session that has spoken holds its own decoder (about 90 MB) in its worker until
    it is closed: close sessions. ``language`` is
    ignored: the model is US English. Timeouts use the trio clock, so run this on the
    real clock (an autojump ``MockClock`` would fire them at once).
    """

    name = "sphinx"

    def __init__(
        self,
        workers: int | None = None,
        *,
        request_timeout: float = 30.0,
        open_timeout: float = 60.0,
        shutdown_grace: float = 5.0,
    ) -> None:
        self.max_workers = max(workers if workers is not None else os.cpu_count() or 1, 1)
        self.request_timeout = request_timeout
        self.open_timeout = open_timeout
        self.shutdown_grace = shutdown_grace
        self._workers: list[_Worker] = []  # running, or failed with sessions still open
        self._retired: list[_Worker] = []  # failed: still to be reaped by aclose()
        self._ids = itertools.count()
        self._pool_lock = trio.Lock()
        self._closed = False

    async def __aenter__(self) -> SphinxRecognizer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for diagnostics and fault-injection tests)."""
        return [w.process.pid for w in self._workers if w.failure is None]

    async def open_session(self, *, sample_rate: int, language: str | None) -> SphinxSession:
        """Open a session on the least-loaded worker, starting one if useful.

        Raises:
            RecognizerError: the worker could not start or rejected the rate.
            LocalProtocolError: the recognizer is closed.
        """
        async with self._pool_lock:
            if self._closed:
                raise LocalProtocolError("open_session() after aclose()")
            worker = await self._pick()
            worker.sessions += 1
        session = SphinxSession(self, worker, next(self._ids))
        try:
            await session._call(Open(session._sid, sample_rate))
        except BaseException:
            worker.sessions -= 1
            session._closed = True
            raise
        return session

    async def _pick(self) -> _Worker:
        self._retired += [w for w in self._workers if w.failure is not None]
        self._workers = [w for w in self._workers if w.failure is None]
        idlest = min(self._workers, key=lambda w: w.sessions, default=None)
        if idlest is not None and (idlest.sessions == 0 or len(self._workers) >= self.max_workers):
            return idlest
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_IMPORT_ROOT, env.get("PYTHONPATH")]))
        # A process group of its own, SIGINT and SIGTERM blocked: a group or cgroup
        # signal stops only us, and aclose() ends the worker (adapters.children).
        process = await open_child(
            [sys.executable, "-m", _WORKER_MODULE], stdin=subprocess.PIPE, stderr=None, env=env
        )
        worker = _Worker(process)
        self._workers.append(worker)
        return worker

    async def aclose(self) -> None:
        """Stop every worker: close its stdin, wait ``shutdown_grace``, then kill.

        Idempotent. Open sessions fail with :class:`RecognizerError` afterwards.
        Cancellation: shielded; takes at most about ``2 * shutdown_grace`` seconds (the
        workers stop concurrently).
        """
        with trio.CancelScope(shield=True):  # a cancelled caller must not leak processes
            async with self._pool_lock:
                self._closed = True
                workers, self._workers, self._retired = self._workers + self._retired, [], []
            async with trio.open_nursery() as nursery:
                for worker in workers:
                    nursery.start_soon(worker.stop, self.shutdown_grace)
