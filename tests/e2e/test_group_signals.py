"""A signal to the whole process group drains cleanly (issue #13).

systemd's ``KillMode=control-group``, ``timeout`` and Ctrl-C in a terminal signal
every process of the group at once. The children (pocketsphinx workers, ffmpeg) must
leave shutdown to their parent, which drains: the sentence in progress is finalized,
nothing is lost, no traceback, and no child outlives the parent.

Each test starts ``steno`` in a session of its own (``start_new_session``: never
pytest's group), reads an MP3 (so an ffmpeg child decodes it) of two utterances,
waits for the first final, lets the second one get going, and signals the group.

# real-time: real processes, real signals, pocketsphinx on the real clock.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest
import soundfile
import trio

from tests.e2e.e2e_helpers import ROOT, cli_env, demo_wav, steno_command

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="needs Linux /proc"),
]

DEADLINE_S = 90
# After the first final, how long the second utterance (3.9 s of speech) runs before
# the signal: well inside it, however late the final was printed.
INTO_SECOND_S = 1.0


@pytest.fixture(name="two_utterances")
def _two_utterances(tmp_path: pathlib.Path) -> pathlib.Path:
    """weather.wav as an MP3: its first sentence, 0.7 s of silence (the endpointer ends
    an utterance after about 0.5 s), then its other two sentences with no pause (one
    utterance of 3.9 s), then 10 s of silence, so ffmpeg is still decoding at the
    signal even when a loaded machine makes the first final late."""
    x, rate = soundfile.read(demo_wav("weather"), dtype="float32")

    def cut(a: float, b: float) -> np.ndarray:
        return x[round(a * rate) : round(b * rate)]

    # Sentences (loud spans): 1.32-3.01, 4.24-6.13, 7.32-9.20 s.
    audio = np.concatenate(
        [cut(1.2, 3.7), cut(4.2, 6.15), cut(7.3, 9.25), np.zeros(rate * 10, "float32")]
    )
    wav, mp3 = tmp_path / "two.wav", tmp_path / "two.mp3"
    soundfile.write(wav, audio, rate, subtype="PCM_16")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", wav, "-c:a", "libmp3lame", mp3],
        check=True,
        timeout=30,  # real-time: a real process
    )
    return mp3


def session_members(sid: int) -> dict[int, tuple[int, str]]:
    """The processes of session ``sid`` still alive (or unreaped): pid -> (group, name)."""
    found = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        # pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[3]) == sid:
            found[int(stat.parent.name)] = (
                int(fields[2]),
                text[text.index("(") + 1 : text.rindex(")")],
            )
    return found


class Pipe:
    """One pipe of the child, read to its end in the background."""

    def __init__(self) -> None:
        self.data = b""

    async def read(self, stream: trio.abc.ReceiveStream) -> None:
        while chunk := await stream.receive_some(65536):
            self.data += chunk

    @property
    def text(self) -> str:
        return self.data.decode(errors="replace")


async def signal_group_after_first_final(
    argv: list[str],
    signum: signal.Signals,
    *,
    first_final: Callable[[str], bool],
    cgroup: bool = False,
) -> tuple[int, str, str]:
    """Run ``steno ARGV`` in its own session, signal its whole group once
    ``first_final(stdout so far)`` holds and the second utterance is under way; return
    (exit code, stdout, stderr). Asserts that no process of the session outlives it.

    ``cgroup``: signal every process of the session one by one instead, the way
    systemd's ``KillMode=control-group`` does (whatever their process group)."""
    with trio.fail_after(DEADLINE_S):
        proc = await trio.lowlevel.open_process(
            [*steno_command(), *argv],
            cwd=ROOT,
            env=cli_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own group: never signal pytest's
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        stdout, stderr = Pipe(), Pipe()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stdout.read, proc.stdout)
                nursery.start_soon(stderr.read, proc.stderr)
                # Another process's progress: nothing to wait on but its output.
                while not first_final(stdout.text):
                    assert proc.poll() is None, stdout.text + stderr.text
                    await trio.sleep(0.05)  # real-time: polling another process
                members = session_members(proc.pid)
                children = {pid: m for pid, m in members.items() if pid != proc.pid}
                assert {name for _, name in children.values()} >= {"ffmpeg"}, members
                assert len(children) >= 2, members  # ffmpeg and a sphinx worker
                # Each child in a group of its own: a group signal reaches steno only.
                assert all(group == pid for pid, (group, _) in children.items()), members
                await trio.sleep(INTO_SECOND_S)  # real-time: the audio runs in another process
                assert proc.poll() is None, "steno ended before the signal:\n" + stdout.text
                if cgroup:
                    for pid in session_members(proc.pid):
                        os.kill(pid, signum)
                else:
                    os.killpg(proc.pid, signum)
                code = await proc.wait()
        finally:
            if proc.returncode is None:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
    assert session_members(proc.pid) == {}  # every child ended with its parent
    return code, stdout.text, stderr.text


@pytest.mark.parametrize("cgroup", [False, True], ids=["group", "control-group"])
async def test_daemon_drains_on_group_sigterm(
    tmp_path: pathlib.Path, two_utterances: pathlib.Path, cgroup: bool
) -> None:
    """``steno daemon`` (embedded pocketsphinx simulator, a file source through ffmpeg)
    gets SIGTERM with every child, to its process group or to each process as systemd's
    default KillMode does: exit 0, the stream ended ok with the sentence in progress
    finalized, 0 ms lost, no traceback."""
    out_dir = tmp_path / "out"
    config = tmp_path / "daemon.toml"
    config.write_text(
        "[daemon]\n"
        'listen = "127.0.0.1:0"\n'
        'simulator = "sphinx"\n'
        f'output-dir = "{out_dir}"\n'
        "drain-deadline-s = 30\n"
        "[[stream]]\n"
        'id = "two"\n'
        f'source = {{ kind = "file", path = "{two_utterances}" }}\n'
        'outputs = { formats = ["jsonl", "txt"] }\n'
    )

    def first_final(_: str) -> bool:
        # The daemon logs no line per sentence; its JSONL output has each final at once.
        return any(
            line.startswith(b'{"type":"Final"')
            for path in out_dir.glob("*.jsonl")
            for line in path.read_bytes().splitlines()
        )

    code, out, err = await signal_group_after_first_final(
        ["daemon", str(config)], signal.SIGTERM, first_final=first_final, cgroup=cgroup
    )
    log = [json.loads(line) for line in out.splitlines()]
    assert "Traceback" not in out + err, out + err
    assert code == 0, out + err
    (end,) = [e for e in log if e["event"] == "daemon.stream.end"]
    assert end["status"] == "ok", end
    assert end["audio_lost_ms"] == 0, end
    assert end["finals"] == 2, end  # the second sentence was finalized by the drain
    assert [e["clean"] for e in log if e["event"] == "daemon.stopped"] == [True]
    assert not [e for e in log if e["level"] in ("error", "critical")], out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
async def test_transcribe_drains_on_group_signal(
    two_utterances: pathlib.Path, signum: signal.Signals
) -> None:
    """``steno transcribe`` (embedded default, an MP3 through ffmpeg) gets Ctrl-C (or
    ``timeout``'s SIGTERM) with every child: the sentence in progress is finalized, 0 ms
    lost, exit 130 (interrupted), no traceback."""
    code, out, err = await signal_group_after_first_final(
        ["transcribe", str(two_utterances)],
        signum,
        first_final=lambda out: "[two.mp3] The weather" in out,
    )
    assert "Traceback" not in out + err, out + err
    assert "rejected" not in err and "sphinx worker" not in err, err
    assert code == 130, out + err
    prefix = "[two.mp3] "
    texts = [line.removeprefix(prefix) for line in out.splitlines() if line.startswith(prefix)]
    assert len(texts) == 2, out  # the transcript (stdout): the drain finalized the second
    status = [line.removeprefix(prefix) for line in err.splitlines() if line.startswith(prefix)]
    assert any(line.startswith("done: interrupted") for line in status), err  # status: stderr
    assert "audio lost 0 ms" in err, err


if sys.platform == "win32":  # pragma: no cover
    pytestmark.append(pytest.mark.skip(reason="POSIX signals"))
