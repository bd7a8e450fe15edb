"""The embedded target: the simulator in a process of its own (so it does not share the
client's core), with the scripted recognizer labelling the scenario's audio.

Parent side: :func:`open_embedded` starts ``python -m engine.scenario.simproc``,
reads the one JSON line it prints once it listens (``{"host", "port", "pid"}``) and
yields the inference URL. The child serves until its stdin reaches end-of-file (the
parent closed it, or died) or it gets SIGINT/SIGTERM, so a crashed run never leaves a
simulator behind.

Child side: ``python -m engine.scenario.simproc AUDIO_JSON`` where ``AUDIO_JSON`` is a
list of ``{"file", "reference"}``; it learns every file's sentences
(:mod:`engine.scenario.labeler`) at 16 and 8 kHz before it listens.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, BinaryIO, Final

import msgspec
import numpy as np
import soxr
import trio

from adapters.children import open_child
from engine.errors import ConfigError

if TYPE_CHECKING:
    import pathlib
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from engine.scenario.labeler import Sentence

__all__ = ["AudioRef", "Embedded", "open_embedded", "serve_scenario"]

START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 10.0
RATES: Final = (16000, 8000)


class AudioRef(msgspec.Struct, frozen=True):
    """A file the simulator should know, and its reference (one sentence a line)."""

    file: str
    reference: str | None = None


class Embedded(msgspec.Struct, frozen=True):
    """The running simulator process."""

    host: str
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/api-ws/v1/inference"


@contextlib.asynccontextmanager
async def open_embedded(audio: Sequence[AudioRef], *, log: pathlib.Path) -> AsyncIterator[Embedded]:
    """Start the simulator process (its log goes to ``log``); stop it on exit.

    Raises:
        ConfigError: it did not start listening within ``START_TIMEOUT_S`` (its
            stderr's last line is in the message).

    Cancellation: the process is killed if it does not stop within ``STOP_TIMEOUT_S``.
    """
    payload = msgspec.json.encode(list(audio)).decode()
    with _open_log(log) as log_file:
        # Its own process group, SIGINT/SIGTERM blocked: a group Ctrl-C reaches the
        # load generators, which drain, and never kills their target under them; it
        # ends when its stdin closes (below).
        process = await open_child(
            [sys.executable, "-m", "engine.scenario.simproc", payload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file.fileno(),
        )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        with trio.move_on_after(START_TIMEOUT_S):
            line = await _read_line(process.stdout)
            if line:
                info = msgspec.json.decode(line, type=Embedded)
                yield info
                return
        with trio.move_on_after(STOP_TIMEOUT_S):
            await process.wait()
        err = _log_lines(log)
        raise ConfigError(
            "the embedded simulator did not start"
            + (f": {err[-1]}" if err else f" within {START_TIMEOUT_S:g} s")
        )
    finally:
        with trio.CancelScope(shield=True):
            await process.stdin.aclose()
            with trio.move_on_after(STOP_TIMEOUT_S):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


def _open_log(log: pathlib.Path) -> BinaryIO:
    log.parent.mkdir(parents=True, exist_ok=True)
    return open(log, "ab")


def _log_lines(log: pathlib.Path) -> list[str]:
    try:
        return log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return []


def _reference_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line for line in f.read().splitlines() if line.strip()]


async def _read_line(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            return b""
        data += chunk
    return data.split(b"\n", 1)[0]


# --------------------------------------------------------------------- the child


async def _learn(audio: Sequence[AudioRef]) -> dict[int, list[Sentence]]:
    from adapters.audio.files import open_audio_source
    from engine.scenario.labeler import learn

    tables: dict[int, list[Sentence]] = {rate: [] for rate in RATES}
    for ref in audio:
        if ref.reference is None:
            continue
        lines = _reference_lines(ref.reference)
        blocks = []
        source = await open_audio_source(ref.file, block_ms=1000)
        async with source:
            async for block in source:
                blocks.append(block)
            rate = source.rate
        samples = np.concatenate(blocks)
        for out_rate in RATES:
            y = soxr.resample(samples, rate, out_rate) if rate != out_rate else samples
            pcm = (np.clip(y, -1.0, 1.0) * 32767).astype(np.int16)
            tables[out_rate].extend(learn(pcm, out_rate, lines))
    return tables


async def _until_stdin_closes() -> None:
    await trio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)


async def _until_signalled() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


async def _stop_when(waiter: Callable[[], Awaitable[None]], scope: trio.CancelScope) -> None:
    await waiter()
    scope.cancel()


async def serve_scenario(
    audio: Sequence[AudioRef],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    child: bool = True,
) -> None:
    """Learn the audio, serve until SIGINT/SIGTERM (and, as a child, stdin's end).

    A child prints one JSON line (``host``, ``port``, ``pid``) once it listens; otherwise
    one line for a person (``steno scenario simulate``).
    """
    from adapters.sim.config import SimConfig
    from adapters.sim.server import serve
    from engine.scenario.labeler import recognizer

    rec = recognizer(await _learn(audio))
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve, SimConfig(host=host, port=port), rec)
        if child:
            print(json.dumps({"host": host, "port": bound, "pid": os.getpid()}), flush=True)
        else:
            print(
                f"steno scenario: simulator for the scenario's audio at "
                f"ws://{host}:{bound}/api-ws/v1/inference (scripted recognizer)",
                file=sys.stderr,
                flush=True,
            )
        async with trio.open_nursery() as waiters:
            if child:
                waiters.start_soon(_stop_when, _until_stdin_closes, waiters.cancel_scope)
            waiters.start_soon(_stop_when, _until_signalled, waiters.cancel_scope)
        nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    from engine.logging import configure

    args = list(sys.argv[1:] if argv is None else argv)
    configure(json=True, level=logging.ERROR)
    audio = msgspec.json.decode(args[0] if args else "[]", type=list[AudioRef])
    trio.run(functools.partial(serve_scenario, audio))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
