"""``pip install .`` gives a working ``steno``: the wheel, in a fresh venv (issue #14).

The wheel is built from a copy of the sources (nothing is written to the checkout),
the way deploy/docker/Dockerfile builds it, and installed into a new virtual
environment without the system's site-packages from the wheels built alongside
(``--no-index``); those come from pip's configured indexes.
Then the installed ``steno`` runs from a directory outside the checkout, with no
PYTHONPATH, so anything read from the source tree at run time would be missing.

# real-time: real processes (pip, venv, steno) with hard timeouts.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import DEMO_AUDIO, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.cpu_heavy]  # pip builds and unpacks wheels

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
WHEEL_STEP = "RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[audio]'"
INSTALL_STEP = "pip install --no-cache-dir --no-index --find-links /wheels 'stenograph[audio]'"


def run(*cmd: str | os.PathLike[str], cwd: pathlib.Path, timeout: float) -> str:
    """Run a command to completion; fail with everything it printed unless it exits 0."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DASHSCOPE_API_KEY")}
    env["CI"] = "true"
    try:
        done = subprocess.run(
            [os.fspath(c) for c in cmd],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,  # real-time: a real process, killed at the deadline
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{cmd} did not end within {timeout} s") from None
    assert done.returncode == 0, f"{cmd}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_metadata_supports_python_3_11_to_3_13() -> None:
    """No upper cap on Python, and a classifier for each supported version."""
    assert PYPROJECT["requires-python"] == ">=3.11"
    versions = {
        c.rsplit(" :: ", 1)[1]
        for c in PYPROJECT["classifiers"]
        if c.startswith("Programming Language :: Python :: 3.")
    }
    assert versions == {"3.11", "3.12", "3.13"}


def dockerfile_copies() -> list[str]:
    """The sources the Dockerfile's wheel stage copies (``COPY <src>... <dest>``)."""
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            sources += line.split()[1:-1]
    return sources


def test_wheel_installs_a_working_steno(tmp_path: pathlib.Path) -> None:
    """Replay the Dockerfile's build steps outside a container (none runs here): copy
    what it copies, ``pip wheel`` everything, install ``stenograph[audio]`` from those
    wheels alone into a fresh venv; then run ``steno --version``, a short transcription
    and a translation on the embedded simulator (its scripted table is package data)."""
    text = DOCKERFILE.read_text()
    assert WHEEL_STEP in text
    assert INSTALL_STEP in text
    src = tmp_path / "src"
    src.mkdir()
    junk = shutil.ignore_patterns("__pycache__", "*.pyc")
    copies = dockerfile_copies()
    assert set(copies) == {"pyproject.toml", "README.md", "engine", "adapters"}
    for name in copies:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=junk)
        else:
            shutil.copy(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    # RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[audio]'
    wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", wheels, ".[audio]"]
    run(*wheel, cwd=src, timeout=600)
    assert len(list(wheels.glob("stenograph-*.whl"))) == 1

    # A fresh venv without pip of its own: this pip installs into it (``--python``), which
    # spares seeding one (ensurepip) and byte-compiling every dependency (``--no-compile``;
    # Python compiles what it imports), neither of which is what is tested here.
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path, timeout=120)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    python, steno = venv / "bin" / "python", venv / "bin" / "steno"
    # RUN pip install --no-cache-dir --no-index --find-links /wheels 'stenograph[audio]'
    install = ["--python", python, "install", "-q", "--no-compile", "--no-index", "--find-links"]
    run(
        sys.executable,
        "-m",
        "pip",
        *install,
        wheels,
        "stenograph[audio]",
        cwd=tmp_path,
        timeout=600,
    )

    work = tmp_path / "work"
    work.mkdir()
    where = run(
        python,
        "-c",
        "import engine, adapters; print(engine.__file__, adapters.__file__)",
        cwd=work,
        timeout=60,
    )
    assert all(pathlib.Path(p).is_relative_to(venv) for p in where.split()), where

    version = run(steno, "--version", cwd=work, timeout=60)
    assert PYPROJECT["version"] in version, version

    shutil.copy(DEMO_AUDIO / "weather.wav", work / "weather.wav")
    out = run(steno, "transcribe", "--fast", "weather.wav", cwd=work, timeout=120)
    finals = [line for line in out.splitlines() if line.startswith("[weather.wav] ")]
    assert any("weather" in line.lower() for line in finals), out
    # stdout is the transcript alone; exit 0 (checked by run) is "done: ok" (on stderr)
    assert not [line for line in finals if line.startswith("[weather.wav] done: ")], out

    out = run(steno, "translate", "--fast", "--to", "zh", "weather.wav", cwd=work, timeout=120)
    assert "今天天气晴朗温暖" in out, out  # the demo table's row, not a "[zh stand-in]"
