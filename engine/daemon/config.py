"""The daemon's TOML configuration, decoded strictly: a typo is refused with its key path.

::

    [daemon]
    listen = "127.0.0.1:9464"         # /healthz, /readyz, /metrics; loopback unless allowed
    api-key-file = "/etc/steno/key"   # else $DASHSCOPE_API_KEY
    drain-deadline-s = 30

    [[stream]]
    id = "lobby"
    model = "paraformer-realtime-v2"
    source = { kind = "url", url = "rtsp://cam.local/lobby" }
    outputs = { formats = ["jsonl", "srt"], rotate = "hour", max-bytes = 50_000_000 }
    idle = { policy = "suspend", threshold-dbfs = -50, after-s = 30, preroll-ms = 500 }

    [[stream]]
    id = "hall-de"
    model = "qwen3.5-livetranslate-flash-realtime"
    source = { kind = "url", url = "srt://mixer.local:9000" }
    translation = { to = ["de"], from = "en", speech = true, voice = "Tina" }

Every table is a frozen Struct with ``forbid_unknown_fields`` and kebab-case keys
(house rule R14), so :func:`load_config` refuses an unknown key or a bad value with
msgspec's path (``$.stream[1].source.kind``) before anything starts; whether a
model can translate what a stream asks (``engine.translation``'s language tables)
is checked there too, naming ``$.stream[N].translation.to`` and the like. The source
tables are in ``config_sources``, the translation table in ``config_translation``,
their common base in ``config_base``. The API key is
never part of the configuration: it comes from the environment or a file
(``keys.resolve_api_key``), and ``keys.dump_config`` shows it only as ``***``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Final, Literal

import msgspec

from adapters.dashscope.models import MODELS, RecognitionOptions, run_task_parameters
from engine._tomlfile import decode_toml, read_toml
from engine.daemon.config_base import StrictTable
from engine.daemon.config_sources import SourceSpec, StdinSource
from engine.daemon.config_translation import TRANSLATING, TranslationSpec, translation_problem
from engine.errors import ConfigError
from engine.policy import DAEMON, RestartPolicy

if TYPE_CHECKING:
    import os

    from engine.config import TranslationOptions

__all__ = [
    "MAX_WORKERS",
    "DaemonConfig",
    "DaemonSection",
    "IdleSpec",
    "OutputSpec",
    "RestartSpec",
    "SessionTuning",
    "StreamSpec",
    "decode_config",
    "load_config",
]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_WORKERS: Final = 256  # worker processes of one daemon (a typo's 10_000 is refused)


# ------------------------------------------------------------ per stream


class OutputSpec(StrictTable, frozen=True):
    """Rolling output files: ``{id}-{YYYYmmdd-HH}.{ext}`` (hour), ``{id}-{YYYYmmdd}.{ext}`` (day).

    ``dir`` defaults to the daemon's ``output-dir``; ``max-bytes`` starts a new file
    once one has reached it (always between records); ``timezone`` names the files.
    A translating stream's ``srt``/``vtt`` cues are bilingual, ``txt`` adds
    ``{stem}.{lang}.txt`` per target language, and ``translation.speech`` adds
    ``{stem}.voice.wav`` (see ``rolling.py``). ``max-line-width`` and ``max-lines``
    lay ``srt``/``vtt`` cues out on word timings (Whisper CLI semantics; 0: no limit).
    """

    dir: str | None = None
    formats: tuple[Literal["txt", "srt", "vtt", "jsonl"], ...] = ("jsonl", "srt", "txt")
    rotate: Literal["hour", "day", "never"] = "hour"
    max_bytes: int | None = None
    timezone: Literal["utc", "local"] = "utc"
    max_line_width: int = 42
    max_lines: int = 2

    def __post_init__(self) -> None:
        if not self.formats or len(set(self.formats)) != len(self.formats):
            raise ValueError("formats must be a non-empty list without repeats")
        if self.max_line_width < 0 or self.max_lines < 0:
            raise ValueError("max-line-width and max-lines must be 0 (no limit) or more")
        if self.max_bytes is not None and self.max_bytes < 4096:
            raise ValueError("max-bytes must be at least 4096")


class IdleSpec(StrictTable, frozen=True):
    """What a long silence does: ``keepalive`` (heartbeat) or ``suspend`` the task.

    suspend: after ``after-s`` below ``threshold-dbfs`` the task is finished and no
    audio is sent; the next block above the threshold reopens one, preceded by the
    last ``preroll-ms`` of the silence so no word's start is cut. ``finish-after-s``
    is how long the session waits without audio before finishing the task; it must
    exceed the source's block length (100 ms for the built-in sources).
    """

    policy: Literal["keepalive", "suspend"] = "keepalive"
    threshold_dbfs: float = -50.0
    after_s: float = 30.0
    preroll_ms: int = 500
    finish_after_s: float = 2.0

    def __post_init__(self) -> None:
        if not -120.0 <= self.threshold_dbfs <= 0.0:
            raise ValueError("threshold-dbfs must be in [-120, 0]")
        if self.after_s <= 0 or not 0 <= self.preroll_ms < self.after_s * 1000:
            raise ValueError("need after-s > 0 and 0 <= preroll-ms < after-s")
        if not 0 < self.finish_after_s < 23:
            raise ValueError("finish-after-s must be in (0, 23)")


class RestartSpec(StrictTable, frozen=True):
    """Overrides of the daemon restart policy (unbounded attempts, capped backoff)."""

    max_attempts: int | None = None
    backoff_base_s: float | None = None
    backoff_cap_s: float | None = None
    healthy_after_s: float | None = None
    jitter: bool | None = None

    def policy(self) -> RestartPolicy:
        """:data:`engine.policy.DAEMON` with the fields set here replaced."""
        changes = {k: v for k, v in msgspec.structs.asdict(self).items() if v is not None}
        return msgspec.structs.replace(DAEMON, **changes)

    def __post_init__(self) -> None:
        self.policy()  # RestartPolicy checks its own invariants


class SessionTuning(StrictTable, frozen=True):
    """Session knobs worth changing in a daemon; ``rotate-task-after-s = 0`` never rotates."""

    frame_ms: int = 100
    replay_buffer_s: float = 120.0
    finish_timeout_s: float = 10.0
    idle_timeout_s: float = 10.0
    rotate_task_after_s: float = 3600.0
    ping_interval_s: float = 15.0

    def __post_init__(self) -> None:
        if not 5 <= self.ping_interval_s <= 300:
            raise ValueError("ping-interval-s must be 5–300")
        if not 10 <= self.frame_ms <= 5000:
            raise ValueError("frame-ms must be 10–5000")
        if self.replay_buffer_s <= 0 or self.finish_timeout_s <= 0:
            raise ValueError("replay-buffer-s and finish-timeout-s must be positive")
        if not 0 < self.idle_timeout_s < 23:
            raise ValueError("idle-timeout-s must be in (0, 23)")
        if self.rotate_task_after_s < 0 or 0 < self.rotate_task_after_s < 60:
            raise ValueError("rotate-task-after-s must be 0 (never) or at least 60")


class StreamSpec(StrictTable, frozen=True):
    """One stream: a source, a model, outputs and policies. ``id`` is stable across reloads.

    ``translate-to`` (a placeholder of earlier versions, never acted on) is
    refused with the fix: translation is the ``translation`` table now, and it
    needs a model that translates.
    """

    id: str
    source: SourceSpec
    model: str = "paraformer-realtime-v2"
    language_hints: tuple[str, ...] = ()
    translation: TranslationSpec | None = None
    translate_to: tuple[str, ...] | None = None  # refused: see the docstring
    url: str | None = None  # overrides the daemon's endpoint for this stream
    outputs: OutputSpec = OutputSpec()
    idle: IdleSpec = IdleSpec()
    restart: RestartSpec = RestartSpec()
    session: SessionTuning = SessionTuning()

    def __post_init__(self) -> None:
        if not _ID.fullmatch(self.id):
            raise ValueError(
                f"stream id {self.id!r} must be 1–64 of A-Z a-z 0-9 . _ - (it names files)"
            )
        if self.translate_to is not None:
            raise ValueError(
                "translate-to is replaced by the translation table; fix: "
                f'translation = {{ to = ["{next(iter(self.translate_to), "en")}"] }} '
                f"with a model that translates ({', '.join(TRANSLATING)})"
            )
        spec = MODELS.get(self.model)
        if spec is None:
            raise ValueError(
                f"unknown model {self.model!r}; fix: use one of {', '.join(sorted(MODELS))}"
            )
        if self.language_hints and spec.translation:
            raise ValueError(
                f"{spec.name} takes no language-hints; fix: set the source language "
                'with translation = { from = "…" } (or leave it to auto-detection)'
            )
        if spec.protocol == "inference":
            try:
                run_task_parameters(spec, self.options(), sample_rate=spec.sample_rate)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None

    def options(self) -> RecognitionOptions:
        """run-task parameters (inference models; the realtime protocol has none)."""
        if MODELS[self.model].protocol == "realtime":
            return RecognitionOptions()
        return RecognitionOptions(language_hints=list(self.language_hints) or None, heartbeat=True)

    def translation_options(self) -> TranslationOptions | None:
        """The session's translation, or None for a stream that only transcribes."""
        return None if self.translation is None else self.translation.options()

    def translation_problem(self) -> tuple[str, str] | None:
        """Why the model cannot do the stream's translation, as (key, message), or None.

        ``key`` is relative to the stream (``translation.to``, ``model``…); the
        messages name the fix in this file's terms.
        """
        return translation_problem(MODELS[self.model], self.translation)


# ---------------------------------------------------------------- daemon


class DaemonSection(StrictTable, frozen=True):
    """Process-wide settings.

    ``simulator`` starts the embedded simulator for every stream (offline runs only:
    it is never chosen by accident). ``url`` or ``region`` picks the real endpoint.
    ``degraded-after-s`` is the grace before /healthz calls a stream that cannot
    reach the service ``degraded`` (a stream losing audio is degraded at once).
    ``workers`` shards the streams over that many worker processes (``"auto"``: one
    per CPU, at most one per stream); 1 runs them all in this process
    (``engine.daemon.shard``).
    """

    listen: str = "127.0.0.1:9464"
    allow_non_loopback: bool = False
    api_key_file: str | None = None
    region: Literal["cn", "intl"] = "cn"
    url: str | None = None
    simulator: Literal["sphinx", "scripted"] | None = None
    output_dir: str = "out/daemon"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    drain_deadline_s: float = 30.0
    http_timeout_s: float = 5.0
    degraded_after_s: float = 5.0  # /healthz: a stream unable to reach the service this long
    workers: int | Literal["auto"] = 1  # processes running the streams (shard.py)

    def __post_init__(self) -> None:
        host, _port = self.address()
        if not self.allow_non_loopback and not _is_loopback(host):
            raise ValueError(
                f"listen address {host!r} is not loopback; fix: use 127.0.0.1, "
                "or set allow-non-loopback = true"
            )
        if self.drain_deadline_s <= 0 or self.http_timeout_s <= 0:
            raise ValueError("drain-deadline-s and http-timeout-s must be positive")
        if self.degraded_after_s < 0:
            raise ValueError("degraded-after-s must be >= 0")
        if isinstance(self.workers, int) and not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(
                f'workers must be 1–{MAX_WORKERS} or "auto", got {self.workers}; '
                'fix: workers = "auto" (one per CPU)'
            )

    def address(self) -> tuple[str, int]:
        """``listen`` as (host, port); ``[::1]:9464`` for IPv6."""
        host, sep, port = self.listen.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"listen must be HOST:PORT, got {self.listen!r}")
        return ("127.0.0.1" if host == "localhost" else host), int(port)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DaemonConfig(StrictTable, frozen=True):
    """The whole file: ``[daemon]`` and the ``[[stream]]`` entries."""

    daemon: DaemonSection = DaemonSection()
    streams: tuple[StreamSpec, ...] = msgspec.field(default=(), name="stream")

    def __post_init__(self) -> None:
        # Errors here are about the whole file, where msgspec adds no path: name it.
        seen: dict[str, int] = {}
        stdin: int | None = None
        for i, stream in enumerate(self.streams):
            if stream.id in seen:
                raise ValueError(
                    f"stream id {stream.id!r} is already used by stream[{seen[stream.id]}]"
                    f" - at `$.stream[{i}].id`"
                )
            seen[stream.id] = i
            problem = stream.translation_problem()
            if problem is not None:
                key, message = problem
                raise ValueError(f"{message} - at `$.stream[{i}].{key}`")
            if isinstance(stream.source, StdinSource):
                if self.daemon.workers != 1:
                    raise ValueError(
                        "a stdin stream runs in the daemon's own process; fix: workers = 1"
                        f" - at `$.stream[{i}].source`"
                    )
                if stdin is not None:
                    raise ValueError(
                        f"only one stream can read stdin (stream[{stdin}] does)"
                        f" - at `$.stream[{i}].source`"
                    )
                stdin = i

    def stream(self, stream_id: str) -> StreamSpec:
        return next(s for s in self.streams if s.id == stream_id)


# ------------------------------------------------------------- loading


def decode_config(raw: bytes | str, *, origin: str = "config") -> DaemonConfig:
    """Decode TOML into a :class:`DaemonConfig`.

    Raises:
        ConfigError: one line, ``origin: what - at `$.path```.
    """
    return decode_toml(raw, DaemonConfig, origin=origin)


def load_config(path: str | os.PathLike[str]) -> DaemonConfig:
    """Read and decode a config file (blocking; small)."""
    return read_toml(path, DaemonConfig)
