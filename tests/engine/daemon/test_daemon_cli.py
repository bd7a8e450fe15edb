"""``steno daemon`` as a real process: JSON logs on stdout, SIGHUP adds a stream, SIGTERM drains.

# real-time: a real process, real signals and the embedded TCP simulator.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys

import pytest
import soundfile
import trio

from adapters.recognizers.tonecode import synthesize

ROOT = pathlib.Path(__file__).resolve().parents[3]

STREAM = """
[[stream]]
id = "{id}"
source = {{ kind = "file", path = "{wav}", loop = true, speed = 4.0 }}
outputs = {{ formats = ["jsonl", "txt"] }}
"""


def write_config(path: pathlib.Path, wav: pathlib.Path, out: pathlib.Path, *ids: str) -> None:
    head = f'[daemon]\nlisten = "127.0.0.1:0"\nsimulator = "scripted"\noutput-dir = "{out}"\ndrain-deadline-s = 15\n'
    path.write_text(head + "".join(STREAM.format(id=i, wav=wav) for i in ids))


class Lines:
    """The daemon's stdout, one JSON log line at a time."""

    def __init__(self, proc: trio.Process) -> None:
        assert proc.stdout is not None
        self._stdout = proc.stdout
        self._buf = b""
        self.seen: list[dict[str, object]] = []

    async def until(self, event: str, **fields: object) -> dict[str, object]:
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                entry = json.loads(line)  # every stdout line is a JSON log record
                self.seen.append(entry)
                if entry.get("event") == event and all(
                    entry.get(k) == v for k, v in fields.items()
                ):
                    return entry
            chunk = await self._stdout.receive_some(65536)
            if not chunk:
                raise AssertionError(f"stdout ended before {event}: {self.seen[-5:]}")
            self._buf += chunk


async def get(port: int, path: str) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data.partition(b"\r\n\r\n")[2]


def _has_text(out: pathlib.Path, stream: str) -> bool:
    return any(p.read_text() for p in out.glob(f"{stream}-*.txt"))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_reload_and_drain_in_a_real_process(tmp_path: pathlib.Path) -> None:
    """Start with stream a; SIGHUP adds b without restarting a; SIGTERM drains both, exit 0."""
    wav = tmp_path / "tones.wav"
    soundfile.write(wav, synthesize(["good morning", "thank you"], 16000), 16000, subtype="PCM_16")
    out, cfg = tmp_path / "out", tmp_path / "d.toml"
    write_config(cfg, wav, out, "a")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DASHSCOPE_API_KEY", None)
    cmd = [sys.executable, "-m", "engine.cli", "daemon", str(cfg)]
    with trio.fail_after(60):
        proc = await trio.lowlevel.open_process(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        try:
            lines = Lines(proc)
            port = (await lines.until("daemon.http.listening"))["port"]
            assert isinstance(port, int)
            await lines.until("daemon.stream.start", stream="a")
            # Another process's file: nothing to wait on but the file itself.
            while not await trio.to_thread.run_sync(_has_text, out, "a"):  # noqa: ASYNC110
                await trio.sleep(0.1)  # real-time: polling another process's file

            write_config(cfg, wav, out, "a", "b")
            proc.send_signal(signal.SIGHUP)
            reloaded = await lines.until("daemon.reloaded")
            assert (reloaded["added"], reloaded["changed"], reloaded["unchanged"]) == (["b"], [], 1)
            await lines.until("daemon.stream.start", stream="b")
            health = json.loads(await get(port, "/healthz"))
            assert set(health["streams"]) == {"a", "b"}

            proc.send_signal(signal.SIGTERM)
            stopped = await lines.until("daemon.stopped")
            assert stopped["clean"] is True
            assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    starts = [e for e in lines.seen if e.get("event") == "daemon.stream.start"]
    assert [e["stream"] for e in starts] == ["a", "b"]  # a was never restarted
    for name in ("a", "b"):
        (jsonl,) = out.glob(f"{name}-*.jsonl")
        last = json.loads(jsonl.read_bytes().splitlines()[-1])
        assert last["type"] == "StreamEnded" and last["status"] == "ok"


class TestCheckAtLoad:
    """``--check`` (and a run, before anything starts) refuses what cannot work."""

    @pytest.mark.parametrize(
        ("streams", "message"),
        [
            ("", r"no \[\[stream\]\]: the daemon would run nothing; fix: add a \[\[stream\]\]"),
            (
                STREAM.format(id="a", wav="/nonexistent/a.wav"),
                r"\$\.stream\[0\]\.source\.path: no such file '/nonexistent/a\.wav' \(stream 'a'\); fix:",
            ),
        ],
    )
    async def test_refused(self, tmp_path: pathlib.Path, streams: str, message: str) -> None:
        from engine.cli.daemon import daemon_command
        from engine.errors import ConfigError

        path = tmp_path / "d.toml"
        path.write_text('[daemon]\nsimulator = "scripted"\n' + streams)
        for check in (True, False):
            args = argparse.Namespace(config=str(path), check=check, dump=False)
            with pytest.raises(ConfigError, match=message):
                await daemon_command(args, environ={})

    async def test_an_existing_file_passes(
        self, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from engine.cli.daemon import daemon_command

        wav = tmp_path / "a.wav"
        soundfile.write(wav, synthesize(["thank you"], 16000), 16000, subtype="PCM_16")
        path = tmp_path / "d.toml"
        write_config(path, wav, tmp_path / "out", "a")
        args = argparse.Namespace(config=str(path), check=True, dump=False)
        assert await daemon_command(args, environ={}) == 0
        assert "OK (1 streams: a;" in capsys.readouterr().err
