"""A headless PulseAudio for the real capture and playback tests (tools/pulse-ci.sh).

:func:`running_pulse` starts one in a temp dir and yields the environment its
clients need. What is *missing* (the tools, the ALSA pulse plugin) is a skip naming
the fix, which CI turns into a failure (tests/skip_policy.py): its setup installs
them. What is installed but *does not work* — the server failing to start, PortAudio
not seeing the ``pulse`` device although the plugin is there — is a failure
everywhere: a skip there would let CI stay green with no real capture test run.

Planted bug these fixtures catch: a ``ci.pa`` line pulseaudio rejects (say, a
misspelt module in tools/pulse-ci.sh) — it was a skip, and CI passed.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PULSE_CI = ROOT / "tools" / "pulse-ci.sh"
ALSA_PULSE_PLUGIN = pathlib.Path("/usr/share/alsa/alsa.conf.d/50-pulseaudio.conf")
INSTALL = "fix: apt-get install pulseaudio pulseaudio-utils libasound2-plugins libportaudio2"


def pulse_ci(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``tools/pulse-ci.sh COMMAND`` under ``env``."""
    return subprocess.run(
        ["sh", str(PULSE_CI), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,  # real time: starting a real server
        check=False,
    )


def skip_unless_installed(*tools: str) -> None:
    """Skip (naming the fix) when a tool or the ALSA pulse plugin is not installed."""
    missing = [t for t in ("pulseaudio", "pactl", "setsid", *tools) if shutil.which(t) is None]
    if not ALSA_PULSE_PLUGIN.exists():
        missing.append(f"the ALSA pulse plugin ({ALSA_PULSE_PLUGIN})")
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed; {INSTALL}")


@contextlib.contextmanager
def running_pulse(base_env: dict[str, str], *tools: str) -> Iterator[dict[str, str]]:
    """A running PulseAudio with ``steno_sink``; yields ``base_env`` plus its variables.

    Fails the test (does not skip) when the installed server does not come up.
    """
    skip_unless_installed(*tools)
    root = tempfile.mkdtemp(prefix="steno-pulse-")  # short: a socket path must fit 108 bytes
    env = {**base_env, "STENO_PULSE_DIR": root}
    try:
        started = pulse_ci("start", env)
        if started.returncode != 0:
            pytest.fail(
                "pulseaudio is installed but did not start (tools/pulse-ci.sh start):\n"
                + started.stderr.strip()[-2000:]
            )
        for line in pulse_ci("env", env).stdout.splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        yield env
    finally:
        pulse_ci("stop", env)
        shutil.rmtree(root, ignore_errors=True)


def base_env() -> dict[str, str]:
    """The test process's environment (for fixtures that do not use cli_env)."""
    return dict(os.environ)
