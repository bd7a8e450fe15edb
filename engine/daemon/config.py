"""The daemon's TOML configuration, decoded strictly: a typo is refused with its key path.

::

    [daemon]
    listen = "127.0.0.1:9464"         # /healthz and /metrics; loopback unless allowed
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
is checked there too, naming ``$.stream[N].translation.to`` and the like. The API key is
never part of the configuration: it comes from the environment or a file
(``keys.resolve_api_key``), and ``keys.dump_config`` shows it only as ``***``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from typing import TYPE_CHECKING, Annotated, Final, Literal

import msgspec

from adapters.dashscope.languages import check_gummy_targets, check_target
from adapters.dashscope.models import MODELS, ModelSpec, RecognitionOptions, run_task_parameters
from engine.config import TranslationOptions
from engine.errors import ConfigError
from engine.policy import DAEMON, RestartPolicy
from engine.translation import check_translation

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "DaemonConfig",
    "DaemonSection",
    "FileSource",
    "IdleSpec",
    "MicSource",
    "OutputSpec",
    "RestartSpec",
    "SessionTuning",
    "SourceSpec",
    "StdinSource",
    "StreamSpec",
    "TranslationSpec",
    "UrlSource",
    "decode_config",
    "load_config",
]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_URL_SCHEMES: Final = frozenset(
    {"http", "https", "rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "rtp", "tcp"}
)


class _Strict(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="kebab"
):
    """Base of every table: unknown keys are errors, keys are kebab-case."""


# ---------------------------------------------------------------- sources


class FileSource(_Strict, frozen=True, tag="file", tag_field="kind"):
    """An audio file played in real time (``speed`` times), once or in a ``loop``."""

    path: str
    loop: bool = False
    speed: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.speed <= 100:
            raise ValueError("speed must be in (0, 100]")


class UrlSource(_Strict, frozen=True, tag="url", tag_field="kind"):
    """A network stream read by ffmpeg (http/https/rtsp/rtmp/srt/udp…).

    ``realtime`` paces an on-demand file (ffmpeg ``-re``); a live stream paces itself.
    A stream that ends or breaks is reopened (``reconnect``) with the stream's backoff.
    """

    url: str
    realtime: bool = False
    rate: int = 16000
    timeout_s: float = 10.0
    reconnect: bool = True

    def __post_init__(self) -> None:
        scheme = urllib.parse.urlsplit(self.url).scheme.lower()
        if scheme not in _URL_SCHEMES:
            raise ValueError(
                f"url scheme {scheme or '(none)'!r} is not a network stream; fix: use one of "
                f"{', '.join(sorted(_URL_SCHEMES))}, or kind = 'file' for a local file"
            )
        _check_rate(self.rate)
        if self.timeout_s <= 0:
            raise ValueError("timeout-s must be positive")


class StdinSource(_Strict, frozen=True, tag="stdin", tag_field="kind"):
    """Raw interleaved int16 little-endian PCM on the daemon's standard input."""

    rate: int = 16000
    channels: int = 1

    def __post_init__(self) -> None:
        _check_rate(self.rate)
        if not 1 <= self.channels <= 32:
            raise ValueError("channels must be 1–32")


class MicSource(_Strict, frozen=True, tag="mic", tag_field="kind"):
    """A capture device (sounddevice); ``device`` is a name or index, None the default.

    Captured like ``steno listen`` does: at the device's native rate (resampled with
    soxr; ``rate`` is accepted for older files and ignored, with a warning), with
    at most ``channels`` channels (downmixed), and reopened with backoff when it is
    unplugged; the outage is an ``AudioGap(device)`` on the stream's timeline.
    """

    device: str | int | None = None
    rate: int | None = None
    channels: int = 1

    def __post_init__(self) -> None:
        if self.rate is not None:
            _check_rate(self.rate)
        if not 1 <= self.channels <= 32:
            raise ValueError("channels must be 1–32")


SourceSpec = FileSource | UrlSource | StdinSource | MicSource


def _check_rate(rate: int) -> None:
    if not 8000 <= rate <= 48000:
        raise ValueError(f"rate {rate} is outside 8000–48000 Hz")


# ------------------------------------------------------------ per stream


class OutputSpec(_Strict, frozen=True):
    """Rolling output files: ``{id}-{YYYYmmdd-HH}.{ext}`` (hour), ``{id}-{YYYYmmdd}.{ext}`` (day).

    ``dir`` defaults to the daemon's ``output-dir``; ``max-bytes`` starts a new file
    once one has reached it (always between records); ``timezone`` names the files.
    A translating stream's ``srt``/``vtt`` cues are bilingual, ``txt`` adds
    ``{stem}.{lang}.txt`` per target language, and ``translation.speech`` adds
    ``{stem}.voice.wav`` (see ``rolling.py``).
    """

    dir: str | None = None
    formats: tuple[Literal["txt", "srt", "vtt", "jsonl"], ...] = ("jsonl", "srt", "txt")
    rotate: Literal["hour", "day", "never"] = "hour"
    max_bytes: int | None = None
    timezone: Literal["utc", "local"] = "utc"

    def __post_init__(self) -> None:
        if not self.formats or len(set(self.formats)) != len(self.formats):
            raise ValueError("formats must be a non-empty list without repeats")
        if self.max_bytes is not None and self.max_bytes < 4096:
            raise ValueError("max-bytes must be at least 4096")


class IdleSpec(_Strict, frozen=True):
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


class RestartSpec(_Strict, frozen=True):
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


class SessionTuning(_Strict, frozen=True):
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


_Language = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,34}$")]
_TRANSLATING: Final = tuple(sorted(n for n, s in MODELS.items() if s.translation))


class TranslationSpec(_Strict, frozen=True):
    """``[stream.translation]``: what a translating model makes of the stream's speech.

    ``to`` lists the target languages (livetranslate takes exactly one; gummy
    documents one at present); ``from`` is the source language, ``auto`` to let
    the service detect it. ``transcription = false`` keeps the translations
    alone (no source text: the translations then settle the sentences).

    livetranslate only: ``speech`` asks for the translated voice as well, which
    the daemon writes beside the text files as ``{stem}.voice.wav`` (24 kHz
    mono, one file per rolling period); ``voice`` names the voice (needs
    ``speech``); ``phrases`` maps source phrases to fixed translations.
    ``vad-silence-ms`` is the silence that ends a segment (livetranslate's
    server VAD; gummy's ``max_end_silence``), unset for the service default.

    Whether the stream's model takes these languages is checked when the file
    loads (``adapters.dashscope.languages``), not when a stream connects.
    """

    to: Annotated[tuple[_Language, ...], msgspec.Meta(min_length=1)]
    source: str = msgspec.field(default="auto", name="from")
    transcription: bool = True
    speech: bool = False
    voice: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    phrases: dict[str, str] = {}
    vad_silence_ms: Annotated[int, msgspec.Meta(ge=200, le=6000)] | None = None

    def __post_init__(self) -> None:
        if len(set(self.to)) != len(self.to):
            raise ValueError("translation.to must not repeat a language")
        if not self.source:
            raise ValueError('translation.from must be a language code or "auto"')
        if self.voice is not None and not self.speech:
            raise ValueError(
                "translation.voice needs speech = true (it names the translated voice)"
            )

    def options(self) -> TranslationOptions:
        """The session's :class:`~engine.config.TranslationOptions` (``auto`` is None)."""
        return TranslationOptions(
            targets=self.to,
            source=None if self.source == "auto" else self.source,
            transcription=self.transcription,
            speech=self.speech,
            voice=self.voice,
            phrases=dict(self.phrases),
            vad_silence_ms=self.vad_silence_ms,
        )


class StreamSpec(_Strict, frozen=True):
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
                f"with a model that translates ({', '.join(_TRANSLATING)})"
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
        return _translation_problem(MODELS[self.model], self.translation)


def _translation_problem(
    spec: ModelSpec, translation: TranslationSpec | None
) -> tuple[str, str] | None:
    name = spec.name
    if translation is None:
        if spec.protocol == "realtime":
            return "translation", (
                f'{name} translates: it needs a target language; fix: translation = {{ to = ["en"] }}'
            )
        return None
    if not spec.translation:
        return "model", (
            f"{name} does not translate; fix: model = one of {', '.join(_TRANSLATING)}, "
            "or remove the translation table"
        )
    options = translation.options()
    checks: list[tuple[str, Callable[[], object]]]
    if spec.protocol == "realtime":
        if len(translation.to) != 1:
            return "translation.to", (
                f"{name} translates into one language per stream, not "
                f"{', '.join(translation.to)}; fix: one language, and a stream per language"
            )
        target = translation.to[0]
        checks = [("translation.to", lambda: check_target(name, target, False))]
        if translation.speech:
            checks.append(("translation.speech", lambda: check_target(name, target, True)))
    else:
        for key, used in (
            ("speech", translation.speech),
            ("voice", translation.voice is not None),
            ("phrases", bool(translation.phrases)),
        ):
            if used:
                return f"translation.{key}", (
                    f"{name} takes no translation {key}; "
                    "fix: use qwen3.5-livetranslate-flash-realtime, or remove it"
                )
        checks = [
            ("translation.from", lambda: check_gummy_targets(name, options.source, ())),
            (
                "translation.to",
                lambda: check_gummy_targets(name, options.source, options.targets),
            ),
        ]
    # Whatever the checks above do not name (they are the same tables, so nothing today).
    checks.append(("translation", lambda: check_translation(spec, options)))
    for key, check in checks:
        try:
            check()
        except ConfigError as exc:
            return key, str(exc).replace(
                "fix: set modalities to text only (no translated speech), or",
                "fix: speech = false, or",
            )
    return None


# ---------------------------------------------------------------- daemon


class DaemonSection(_Strict, frozen=True):
    """Process-wide settings.

    ``simulator`` starts the embedded simulator for every stream (offline runs only:
    it is never chosen by accident). ``url`` or ``region`` picks the real endpoint.
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

    def __post_init__(self) -> None:
        host, _port = self.address()
        if not self.allow_non_loopback and not _is_loopback(host):
            raise ValueError(
                f"listen address {host!r} is not loopback; fix: use 127.0.0.1, "
                "or set allow-non-loopback = true"
            )
        if self.drain_deadline_s <= 0 or self.http_timeout_s <= 0:
            raise ValueError("drain-deadline-s and http-timeout-s must be positive")

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


class DaemonConfig(_Strict, frozen=True):
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
    try:
        return msgspec.toml.decode(raw, type=DaemonConfig)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def load_config(path: str | os.PathLike[str]) -> DaemonConfig:
    """Read and decode a config file (blocking; small)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from None
    return decode_config(raw, origin=os.fspath(path))
