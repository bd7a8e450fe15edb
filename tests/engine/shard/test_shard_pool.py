"""``engine.shard``'s parent side: what every file shares, and workers that never start.

# real-time: the pool tests start real (tiny) processes; each is bounded by fail_after.
"""

from __future__ import annotations

import sys

import msgspec
import pytest
import trio

from engine.config import Secret, SessionConfig
from engine.pipeline import FileStreamConfig
from engine.shard import _pool, open_workers
from engine.shard._handle import file_template


def _config(path: str, stream: str, stem: str, **extra: object) -> FileStreamConfig:
    session = SessionConfig(
        stream=stream, model="paraformer-realtime-v2", url="ws://127.0.0.1:1", api_key=Secret("k")
    )
    return FileStreamConfig(path=path, session=session, output_stem=stem, **extra)  # type: ignore[arg-type]


class TestFileTemplate:
    def test_the_shared_settings_without_each_files_own(self) -> None:
        """The template is the first file's settings with path, stem and stream left blank."""
        configs = [
            _config("/a.wav", "a.wav", "a", speed=None),
            _config("/b.wav", "b.wav", "b", speed=None),
        ]
        template = file_template(configs)
        assert (template.path, template.output_stem, template.session.stream) == ("", None, "")
        assert template.speed is None
        assert template.session.api_key == Secret("k")
        rebuilt = msgspec.structs.replace(
            template,
            path="/b.wav",
            output_stem="b",
            session=msgspec.structs.replace(template.session, stream="b.wav"),
        )
        assert rebuilt == configs[1]

    def test_files_that_differ_otherwise_are_refused(self) -> None:
        """One template cannot carry two different paces: a caller's bug, said at once."""
        configs = [_config("/a.wav", "a.wav", "a"), _config("/b.wav", "b.wav", "b", speed=None)]
        with pytest.raises(ValueError, match="differ"):
            file_template(configs)


class TestOpenWorkers:
    async def test_workers_that_never_say_hello_are_an_os_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Workers that exit before their hello (a broken install): OSError, which the CLI
        takes as "stream in this process", and no process is left behind."""
        monkeypatch.setattr(_pool, "WORKER_COMMAND", (sys.executable, "-c", "raise SystemExit(3)"))
        with trio.fail_after(60), pytest.raises(OSError, match="none of 2 worker processes"):
            async with open_workers(2):
                pytest.fail("the pool opened")

    async def test_a_worker_speaking_garbage_is_killed(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A worker whose first bytes are not a Hello is killed; the one that greets serves."""
        # A child process that writes garbage and then hangs until the pool kills it.
        garbage = (
            "import signal, sys; sys.stdout.write('x' * 64); sys.stdout.flush(); signal.pause()"
        )
        commands = iter([(sys.executable, "-c", garbage), _pool.WORKER_COMMAND])
        real_open_child = _pool.open_child

        async def open_child(command: object, **kwargs: object) -> trio.Process:
            return await real_open_child(next(commands), **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(_pool, "open_child", open_child)
        with trio.fail_after(60):
            async with open_workers(2) as pool:
                assert pool.started
                liar, good = pool._workers
                assert not liar.greeted and good.greeted
                with trio.fail_after(10):
                    await liar.process.wait()
                assert liar.process.returncode == -9
        assert good.process.returncode is not None
