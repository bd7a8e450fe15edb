"""Shared test fixtures: structlog reset, trio deadlines, the demo audio, hidden tools,
the CI skip policy, and turns for the CPU-bound slow tests under pytest-xdist.

The skip policy lives in ``skip_policy.py`` (a plugin, so it can be tested on a suite
of its own); its hook is imported here to apply to this suite.
"""

from __future__ import annotations

import fcntl
import functools
import gc
import os
import pathlib
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Generator, Iterator
from typing import Any, Final, ParamSpec

import pytest
import structlog
import trio
from skip_policy import pytest_runtest_makereport as pytest_runtest_makereport

from tools.ci.order import load_durations, longest_first

P = ParamSpec("P")

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEMO_AUDIO = ROOT / "scenarios" / "audio"


REAL_TIME_DIRECTORIES: Final = frozenset({"e2e", "interop"})
"""Test directories whose every test runs real processes or the official SDK's threads
on the real clock: all of them count as ``slow``, marked or not."""

CPU_LOCK_WAIT_S: Final = 600.0
"""How long a slow test waits for its turn (:func:`pytest_runtest_protocol`) before it
runs anyway: the turns keep CPU-bound runs (pocketsphinx) from starving one another and
the real-time tests, and every test is bounded by its own timeout (``timeout``)."""

_CPU_LOCK_POLL_S: Final = 0.2

TEST_LOCKS_ENV: Final = "STENO_TEST_LOCKS"
"""A directory for the turns of two pytest runs side by side (``make test`` runs the
quick part beside the slow one and sets it): then every test takes its turn there, so a
``cpu_heavy`` test waits for the quick part's running tests and has the machine alone."""


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under :data:`REAL_TIME_DIRECTORIES` ``slow``; order the files
    for the workers (:func:`_longest_files_first`).

    ``make test`` runs ``-m "not slow"`` on every core, then ``-m slow`` on a few more
    workers than cores: most slow tests wait on the real clock (paced audio, another
    process), so they can share the machine, while each CPU-bound one (``cpu_heavy``)
    runs alone (:func:`pytest_runtest_protocol`). A real-process test that forgot its
    marker must not land in the quick part.
    """
    tests = ROOT / "tests"
    for item in items:
        if item.path.is_relative_to(tests) and REAL_TIME_DIRECTORIES.intersection(
            item.path.relative_to(tests).parts[:-1]
        ):
            item.add_marker(pytest.mark.slow)
    _longest_files_first(config, items)


def _longest_files_first(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--dist loadfile``, hand the workers the longest test files first.

    ``make test`` passes ``--no-loadscope-reorder`` so that pytest-xdist keeps this
    order (:mod:`tools.ci.order`: recorded seconds per file, ``tools/ci/durations.json``);
    what runs is unchanged, only when.
    """
    if config.getoption("dist", "no") not in {"loadfile", "loadscope"}:
        return
    root = ROOT.as_posix() + "/"
    files = [item.path.as_posix().removeprefix(root) for item in items]
    items[:] = [items[i] for i in longest_first(files, load_durations())]


@pytest.hookimpl(tryfirst=True, wrapper=True)  # outside pytest-timeout's clock
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Under pytest-xdist, a ``cpu_heavy`` test has the machine to itself; other slow
    tests overlap one another.

    A readers-writer lock over the workers: ``flock`` on a file in the run's shared temp
    directory, shared for a slow test, exclusive for a ``cpu_heavy`` one, held for the
    whole protocol (setup, call, teardown: a module fixture's run of the CLI included).
    A ``cpu_heavy`` test also holds a turnstile while it waits and runs, so slow tests
    that come after it wait for it instead of overlapping it for ever. Each wait has a
    deadline (:data:`CPU_LOCK_WAIT_S`), after which the test runs anyway and says so in
    its report; a test that hangs holding the lock is ended by its timeout, which
    releases it. In one process, tests run one at a time anyway: no lock. With
    :data:`TEST_LOCKS_ENV` set, the lock is in that directory, shared with the run
    beside this one, and every test takes it (shared unless ``cpu_heavy``).
    """
    side_by_side = os.environ.get(TEST_LOCKS_ENV)
    if side_by_side:
        shared = pathlib.Path(side_by_side)
    elif item.get_closest_marker("slow") is None or "PYTEST_XDIST_WORKER" not in os.environ:
        return (yield)
    else:
        # xdist gives each worker ``--basetemp <the run's basetemp>/popen-gwN``: the
        # parent belongs to this run alone (not to another pytest run on the machine)
        shared = pathlib.Path(item.config.option.basetemp).parent
    heavy = item.get_closest_marker("cpu_heavy") is not None
    deadline = time.monotonic() + CPU_LOCK_WAIT_S
    with (
        (shared / "cpu-turnstile.lock").open("a") as turnstile,
        (shared / "cpu-heavy.lock").open("a") as lock,
    ):
        passed = _flock(turnstile.fileno(), fcntl.LOCK_EX, deadline=deadline)
        if passed and not heavy:
            fcntl.flock(turnstile.fileno(), fcntl.LOCK_UN)
        mode = fcntl.LOCK_EX if heavy else fcntl.LOCK_SH
        locked = passed and _flock(lock.fileno(), mode, deadline=deadline)
        if not locked:
            item.add_report_section(
                "setup", "cpu_heavy", f"ran without its turn after {CPU_LOCK_WAIT_S:.0f} s"
            )
        try:
            return (yield)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
            fcntl.flock(turnstile.fileno(), fcntl.LOCK_UN)


def _flock(fd: int, mode: int, *, deadline: float) -> bool:
    """Take ``flock(fd, mode)`` by ``deadline`` (monotonic); False if it did not come."""
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_CPU_LOCK_POLL_S)  # real-time: another worker's test holds it
        else:
            return True


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Every test starts and ends with structlog's defaults (no cached loggers)."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def deadline(
    seconds: float,
) -> Callable[[Callable[P, Awaitable[Any]]], Callable[P, Awaitable[Any]]]:
    """Fail an async test that runs longer than ``seconds`` on the trio clock.

    Under ``autojump_clock`` this is virtual time, so a hang is caught at once.
    """

    def decorate(fn: Callable[P, Awaitable[Any]]) -> Callable[P, Awaitable[Any]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            with trio.fail_after(seconds):
                return await fn(*args, **kwargs)

        return wrapper

    return decorate


def run_queue_s() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (Linux; else 0.0).

    The second field of ``/proc/thread-self/schedstat``: what a loaded machine adds to
    a real-time wait. A test that bounds how late its thread woke subtracts this, so
    the bound holds at any load and still catches the thread being blocked (a sleep, a
    blocking call, its own CPU work): those are not run-queue time.
    """
    try:
        fields = pathlib.Path("/proc/thread-self/schedstat").read_text().split()
    except OSError:
        return 0.0
    return int(fields[1]) / 1e9


@pytest.fixture(name="inline_threads")
def _inline_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """``trio.to_thread.run_sync`` runs its function inline: virtual time stands still.

    On ``MockClock(autojump_threshold=0)`` a worker thread's run counts as idle time:
    while a file read is in flight, autojump leaps from timer to timer (a heartbeat, a
    liveness check, the simulator's end of speech), so how far the clock moves during
    one read depends on how busy the machine is: a 100 ms read under load has skipped
    ~100 virtual seconds and cut a sentence short. Inline, the read takes no virtual
    time, as an instant disk would, and the run is the same on any machine. The code
    under test keeps every checkpoint it had (the call still awaits one first); only
    the thread hop is gone, so use this where the thread is not what is tested.
    """

    async def run_inline(fn: Callable[..., Any], *args: Any, **_options: Any) -> Any:
        await trio.lowlevel.checkpoint()
        return fn(*args)

    monkeypatch.setattr(trio.to_thread, "run_sync", run_inline)


@pytest.fixture(name="demo_audio")
def _demo_audio() -> pathlib.Path:
    return DEMO_AUDIO


_SDK_THREAD_GRACE_S = 5.0


@pytest.fixture(autouse=True)
def _collect_sdk_sockets(request: pytest.FixtureRequest) -> Iterator[None]:
    """After an interop test, finalize the official SDK's dropped sockets quietly.

    The SDK's websocket-client threads can drop their sockets without closing
    them. They are finalized whenever the garbage collector gets to them: in a
    later test, or at the end of the session, where pytest (warnings as errors)
    would report the SDK's ResourceWarning as a failure of whatever ran then. So
    after each test under ``tests/interop`` (and only there: our own code must
    still fail on an unclosed socket) wait briefly for the threads it started,
    then collect with ResourceWarning silenced.
    """
    if "interop" not in request.node.path.parts:
        yield
        return
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + _SDK_THREAD_GRACE_S
    for thread in set(threading.enumerate()) - before:
        if not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


# ------------------------------------------------------------------------- hidden tools


def path_without(directory: pathlib.Path, *tools: str) -> str:
    """A PATH that finds every program of the current PATH except ``tools``.

    ``directory`` receives one symlink per program (first one on PATH wins), so the
    code under test and its child processes look tools up the ordinary way
    (``shutil.which``, ``execvp``) and find exactly what a machine without ``tools``
    has. Interpreters keep working: the symlinks point at the real files.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if not entry or not os.path.isdir(entry):
            continue
        for name in os.listdir(entry):
            target = os.path.join(entry, name)
            link = directory / name
            if name in tools or link.exists() or link.is_symlink():
                continue
            if os.path.isfile(target) and os.access(target, os.X_OK):
                link.symlink_to(target)
    return str(directory)


@pytest.fixture(name="hide_ffmpeg")
def _hide_ffmpeg(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> str:
    """This test runs on a machine without ffmpeg/ffprobe (PATH hides them); returns PATH.

    Use it for tests of the no-ffmpeg path, so they run (and mean something) whether or
    not ffmpeg is installed, instead of being skipped where it is.
    """
    path = path_without(tmp_path_factory.mktemp("path-without-ffmpeg"), "ffmpeg", "ffprobe")
    monkeypatch.setenv("PATH", path)
    return path


@pytest.fixture(name="any_transport", params=["trio-websocket", "fast"])
def _any_transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once per WebSocket client transport (``adapters/dashscope/ws.py``).

    Sets ``STENO_TRANSPORT`` (the real dialer reads it at each dial; child
    processes inherit it) and, for ``fast``, points the simulator's in-memory
    net (``MemoryNet.dial``) at the fast transport over its raw streams.
    """
    name: str = request.param
    monkeypatch.setenv("STENO_TRANSPORT", name)
    if name == "fast":
        from adapters.dashscope.fastws import stream_dialer
        from adapters.sim.memory import MemoryNet

        def dial(self: MemoryNet, url: str, headers: Any, *, connect_timeout: float = 60.0) -> Any:
            return stream_dialer(self.open_stream)(url, headers, connect_timeout=connect_timeout)

        monkeypatch.setattr(MemoryNet, "dial", dial)
    return name
