"""The deploy recipes, tested as far as this machine allows (issue #14).

* ``deploy/systemd/stenograph.service``: ``systemd-analyze verify`` (no warning
  either) and ``systemd-analyze security`` offline, and its stop settings agree with
  the daemon's (drain deadline, exit codes).
* ``deploy/docker/Dockerfile``: no container builder runs here (nor can the base
  image be pulled), so its build steps are replayed in ``tests/test_packaging.py``; here
  its shape is checked, and its ENTRYPOINT and HEALTHCHECK run as real processes: the
  probe passes on a running daemon, ``docker stop``'s SIGTERM to PID 1 drains it (exit
  0), and then the probe fails in one line.
* ``deploy/grafana/stenograph.json``: every metric a panel queries is one a live
  daemon exports on /metrics.

# real-time: real processes (systemd-analyze, steno daemon) with hard timeouts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tomllib
import urllib.request

import pytest
import trio

from engine.cli import EXIT_USAGE
from engine.daemon.config import DaemonSection
from tests.conftest import DEMO_AUDIO, ROOT
from tests.e2e.e2e_helpers import cli_env, steno_command

DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "stenograph.service"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DASHBOARD = DEPLOY / "grafana" / "stenograph.json"
EXAMPLE = ROOT / "scenarios" / "daemon-example.toml"


def unit_settings() -> dict[str, list[str]]:
    """``Key=value`` lines of the unit, every value of a key in order."""
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def run(
    cmd: list[str], *, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,  # real-time: a real process, killed at the deadline
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )


# ------------------------------------------------------------------ systemd


@pytest.fixture(name="systemd_analyze")
def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed; fix: tools/setup-system.sh (systemd)")
    return found


def test_unit_verifies_without_warnings(systemd_analyze: str, tmp_path) -> None:
    """``systemd-analyze verify`` passes and says nothing. Only ExecStart's path is
    changed, to this checkout's steno (verify checks that the program exists)."""
    steno = steno_command()[0]
    assert os.access(steno, os.X_OK), "needs the steno console script"
    unit = tmp_path / "stenograph.service"
    text = UNIT.read_text()
    assert "ExecStart=/opt/stenograph/bin/steno daemon " in text
    unit.write_text(text.replace("/opt/stenograph/bin/steno", steno))
    done = run([systemd_analyze, "verify", "--man=no", str(unit)], timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == "", done.stdout + done.stderr

    typo = tmp_path / "typo.service"  # the check can fail: an unknown key is a warning
    typo.write_text(unit.read_text().replace("KillMode=", "KillMdoe="))
    done = run([systemd_analyze, "verify", "--man=no", str(typo)], timeout=60)
    assert "Unknown key 'KillMdoe'" in done.stderr


def test_unit_is_hardened(systemd_analyze: str) -> None:
    """``systemd-analyze security`` rates the unit's exposure "OK" (at most 2.0 of 10)."""
    done = run(
        [systemd_analyze, "security", "--offline=yes", "--threshold=20", str(UNIT)], timeout=60
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr


def test_unit_stop_and_restart_agree_with_the_daemon() -> None:
    """SIGTERM to steno alone, a stop timeout above the drain deadline (the default and
    the example config's), restart on failure but not on a configuration error."""
    unit = unit_settings()
    assert unit["KillMode"] == ["mixed"]
    assert unit["KillSignal"] == ["SIGTERM"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == [str(EXIT_USAGE)]
    example = tomllib.loads(EXAMPLE.read_text())["daemon"]["drain-deadline-s"]
    timeout_s = float(unit["TimeoutStopSec"][0])
    assert timeout_s > max(DaemonSection().drain_deadline_s, example) + 10


# ------------------------------------------------------------------ docker


def test_dockerfile_shape() -> None:
    """A slim Python base, a non-root user, ffmpeg, SIGTERM to stop, a health probe of
    /healthz, and ``steno daemon`` as the exec-form entrypoint."""
    instructions = dockerfile_instructions()
    bases = [args for word, args in instructions if word == "FROM"]
    assert bases and all(re.match(r"python:\$\{PYTHON\}-slim", b) for b in bases), bases
    (python_arg,) = [args for word, args in instructions if word == "ARG"]
    assert python_arg == "PYTHON=3.11"
    users = [args for word, args in instructions if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert any("apt-get install" in args and "ffmpeg" in args for w, args in instructions)
    assert ("STOPSIGNAL", "SIGTERM") in instructions
    (entrypoint,) = [json.loads(args) for word, args in instructions if word == "ENTRYPOINT"]
    assert entrypoint == ["steno", "daemon"]
    (health,) = [args for word, args in instructions if word == "HEALTHCHECK"]
    assert "/healthz" in dict(instructions)["ENV"] and "STENO_HEALTH_URL" in health


def healthcheck_command() -> list[str]:
    (health,) = [args for word, args in dockerfile_instructions() if word == "HEALTHCHECK"]
    return json.loads(health.partition("CMD ")[2])


@pytest.mark.slow
async def test_entrypoint_serves_health_and_drains_on_docker_stop(tmp_path) -> None:
    """The image's command, ``steno daemon CONFIG``, as a real process: the HEALTHCHECK
    probe passes; SIGTERM to that process alone (``docker stop``) drains it to exit 0
    well inside the stop timeout; then the probe fails with one line, no traceback."""
    out = tmp_path / "out"
    config = tmp_path / "daemon.toml"
    config.write_text(
        "[daemon]\n"
        'listen = "127.0.0.1:0"\n'
        'simulator = "scripted"\n'
        f'output-dir = "{out}"\n'
        "drain-deadline-s = 20\n"
        "[[stream]]\n"
        'id = "demo"\n'
        f'source = {{ kind = "file", path = "{DEMO_AUDIO / "weather.wav"}", loop = true }}\n'
        'outputs = { formats = ["jsonl"] }\n'
    )
    (entry,) = [json.loads(a) for w, a in dockerfile_instructions() if w == "ENTRYPOINT"]
    command = [*steno_command(), *entry[1:], str(config)]
    probe = healthcheck_command()
    assert probe[0] == "python"
    probe[0] = shutil.which("python3") or "python3"
    with trio.fail_after(60):
        proc = await trio.lowlevel.open_process(
            command,
            env=cli_env(),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            start_new_session=True,  # never pytest's group
        )
        assert proc.stdout is not None
        log: list[dict[str, object]] = []
        buf = b""
        try:
            while not any(e["event"] == "daemon.stream.start" for e in log):
                chunk = await proc.stdout.receive_some(65536)
                assert chunk, log
                *lines, buf = (buf + chunk).split(b"\n")
                log += [json.loads(line) for line in lines]
            (listening,) = [e for e in log if e["event"] == "daemon.http.listening"]
            url = f"http://127.0.0.1:{listening['port']}/healthz"
            env = {**os.environ, "STENO_HEALTH_URL": url}
            healthy = await trio.to_thread.run_sync(lambda: run(probe, env=env, timeout=30))
            assert healthy.returncode == 0, healthy.stderr
            metrics = await trio.to_thread.run_sync(fetch, url.replace("/healthz", "/metrics"))

            proc.send_signal(signal.SIGTERM)  # docker stop: PID 1 only
            started = trio.current_time()
            async with proc.stdout:
                while chunk := await proc.stdout.receive_some(65536):
                    buf += chunk
            assert await proc.wait() == 0
            assert trio.current_time() - started < float(unit_settings()["TimeoutStopSec"][0])
        finally:
            if proc.returncode is None:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
    log += [json.loads(line) for line in buf.splitlines()]
    assert [e["clean"] for e in log if e["event"] == "daemon.stopped"] == [True]
    (end,) = [e for e in log if e["event"] == "daemon.stream.end"]
    assert (end["status"], end["audio_lost_ms"]) == ("ok", 0)

    down = run(probe, env=env, timeout=30)
    assert down.returncode == 1
    assert down.stderr.startswith("unhealthy: ") and down.stderr.count("\n") == 1, down.stderr

    # The Grafana dashboard queries only what a live daemon exports.
    exported = metric_names(metrics)
    used = {n for q in dashboard_queries() for n in re.findall(r"\bsteno_[a-z_]+", q)}
    assert used, "the dashboard queries no steno_ metric"
    assert used <= exported, sorted(used - exported)


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # real-time: a real socket
        return response.read().decode()


# ------------------------------------------------------------------ grafana


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def metric_names(exposition: str) -> set[str]:
    """The sample names a Prometheus text exposition has or declares: its samples, and
    for each ``# TYPE`` family the names its samples take (a family without samples
    yet, such as gaps by reason before the first gap, still counts)."""
    names = set()
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("", "_total")}
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split()
            names |= {family.removesuffix("_total") + s for s in suffixes.get(kind, ("",))}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_dashboard_covers_what_operators_watch() -> None:
    """Panels for streams, finals/s, reconnects, lost audio, lateness and first-package
    delay, each filtered by the ``$stream`` variable where the metric has the label.
    (That every name is exported is checked against a live daemon above.)"""
    queries = dashboard_queries()
    for wanted in (
        "steno_stream_state",
        "rate(steno_finals_total",
        "steno_reconnects_total",
        "steno_audio_lost_seconds_total",
        "steno_push_lateness_seconds_bucket",
        "steno_first_package_delay_seconds_bucket",
    ):
        assert any(wanted in q for q in queries), wanted
    per_stream = [q for q in queries if "steno_up" not in q and "ratelimit" not in q]
    assert all('stream=~"$stream"' in q for q in per_stream), per_stream
