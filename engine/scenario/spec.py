"""The scenario file: strict TOML decoded into frozen Structs (house rule R14).

::

    [run]
    target = "embedded"            # or a ws:// or wss:// URL; the key comes from DASHSCOPE_API_KEY
    seed = 7

    [[scenario]]
    name = "rooms"
    executor = "per-session-iterations"
    sessions = 50
    iterations = 1
    audio = { file = "scenarios/audio/numbers.wav", reference = "scenarios/audio/numbers.txt" }

    [thresholds]
    first_package_delay = ["p(95)<800"]
    "wer{scenario:rooms}" = [{ threshold = "max<0.35", abort-on-fail = true }]

Every table is a frozen Struct with ``forbid_unknown_fields`` and kebab-case keys, like
the daemon's configuration: an unknown key or a bad value is refused with msgspec's
key path (``… - at `$.scenario[1].rate```) before anything starts. Durations are
k6's strings (``"500ms"``, ``"30s"``, ``"1m30s"``, ``"2h"``). Executors are k6's,
with sessions in place of virtual users (see :mod:`engine.scenario.schedule`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, TypeAlias

import msgspec

from adapters.dashscope.models import MODELS
from engine._tomlfile import decode_toml, read_toml

if TYPE_CHECKING:
    import os

__all__ = [
    "AudioSpec",
    "ConstantSessions",
    "Duration",
    "Executor",
    "FaultStep",
    "PerSessionIterations",
    "RampingSessionArrivalRate",
    "RampingSessions",
    "RateStage",
    "RunSection",
    "ScenarioFile",
    "SessionArrivalRate",
    "SessionStage",
    "ThresholdSpec",
    "decode_scenario",
    "load_scenario",
    "seconds",
]

_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Duration: TypeAlias = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^(\d+(\.\d+)?(ms|s|m|h))+$",
        description='a k6 duration such as "500ms", "30s", "1m30s", "2h"',
    ),
]
"""A k6 duration string; :func:`seconds` turns it into seconds."""

NAME: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def seconds(duration: str) -> float:
    """``"1m30s"`` → 90.0 (the string is already checked by the :data:`Duration` pattern)."""
    return sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(duration))


class _Strict(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="kebab"
):
    """Base of every table: unknown keys are errors, keys are kebab-case."""


# ----------------------------------------------------------------- audio and faults


class AudioSpec(_Strict, frozen=True, kw_only=True):
    """What every session of a scenario plays.

    Attributes:
        file: an audio file in any format ``steno transcribe`` takes. A relative path is
            looked up from the current directory, then from the scenario file's.
        reference: a transcript (one sentence a line) to score the finals against
            (the ``wer`` metric); None: no WER.
        speed: pacing, in multiples of real time (1.0 = live).
        lead_silence, tail_silence: silence pushed before and after the file.
    """

    file: str
    reference: str | None = None
    speed: float = 1.0
    lead_silence: Duration = "0s"
    tail_silence: Duration = "0s"

    def __post_init__(self) -> None:
        if not 0 < self.speed <= 100:
            raise ValueError("speed must be in (0, 100]")
        if not self.file:
            raise ValueError("file must not be empty")


class FaultStep(_Strict, frozen=True, kw_only=True):
    """From ``at`` (after the scenario's start) on, a ``share`` of new streams get ``plan``."""

    plan: str
    at: Duration = "0s"
    share: float = 1.0

    def __post_init__(self) -> None:
        _check_plan(self.plan)
        if not 0.0 <= self.share <= 1.0:
            raise ValueError("share must be in [0, 1]")


def _check_plan(plan: str) -> None:
    from adapters.sim.faults import FaultSpecError, parse_fault_spec

    try:
        parse_fault_spec(plan)
    except FaultSpecError as exc:
        raise ValueError(str(exc)) from None


# ----------------------------------------------------------------------- executors


class _Scenario(_Strict, frozen=True, kw_only=True, tag_field="executor"):
    """What every executor has.

    Attributes:
        name: the scenario's name (a metric tag: ``first_package_delay{scenario:NAME}``).
        model: the recognition model every session uses (an inference-protocol model).
        audio: what each session plays.
        start_time: when the scenario starts, after the run's start.
        graceful_stop: how long streams in progress may go on once the executor's time
            is up; then they are cancelled (counted in ``sessions_interrupted``).
        faults: a simulator fault plan for every stream (its connections are counted per
            stream, so ``first=1`` hits each stream's first connection), or a timeline
            of ``{ at, plan, share }`` steps. Loopback targets only.
    """

    name: Annotated[str, msgspec.Meta(pattern=NAME)]
    audio: AudioSpec
    model: str = "paraformer-realtime-v2"
    start_time: Duration = "0s"
    graceful_stop: Duration = "30s"
    faults: str | tuple[FaultStep, ...] | None = None

    @property
    def executor_name(self) -> str:
        """The executor's name as the file spells it (the tag)."""
        return str(type(self).__struct_config__.tag)

    def __post_init__(self) -> None:
        spec = MODELS.get(self.model)
        if spec is None or spec.protocol != "inference":
            known = ", ".join(sorted(n for n, s in MODELS.items() if s.protocol == "inference"))
            raise ValueError(
                f"model {self.model!r} is not a recognition model; fix: one of {known}"
            )
        if isinstance(self.faults, str):
            _check_plan(self.faults)


class ConstantSessions(_Scenario, frozen=True, kw_only=True, tag="constant-sessions"):
    """``sessions`` sessions, each streaming the audio again and again for ``duration``."""

    sessions: Annotated[int, msgspec.Meta(ge=1)]
    duration: Duration


class SessionStage(_Strict, frozen=True, kw_only=True):
    """Ramp the number of sessions linearly to ``target`` over ``duration``."""

    target: Annotated[int, msgspec.Meta(ge=0)]
    duration: Duration


class RampingSessions(_Scenario, frozen=True, kw_only=True, tag="ramping-sessions"):
    """Sessions ramped through ``stages`` (k6's ramping-vus); a session above the target
    finishes its stream (within ``graceful-ramp-down``) and stops."""

    stages: Annotated[tuple[SessionStage, ...], msgspec.Meta(min_length=1)]
    start_sessions: Annotated[int, msgspec.Meta(ge=0)] = 1
    graceful_ramp_down: Duration = "30s"


class PerSessionIterations(_Scenario, frozen=True, kw_only=True, tag="per-session-iterations"):
    """Each of ``sessions`` plays the audio ``iterations`` times, within ``max-duration``."""

    sessions: Annotated[int, msgspec.Meta(ge=1)] = 1
    iterations: Annotated[int, msgspec.Meta(ge=1)] = 1
    max_duration: Duration = "10m"


class SessionArrivalRate(_Scenario, frozen=True, kw_only=True, tag="session-arrival-rate"):
    """Open model: ``rate`` stream starts per ``time-unit`` for ``duration``, whatever the
    service does; a start that finds all ``max-sessions`` busy is dropped (counted)."""

    rate: Annotated[float, msgspec.Meta(gt=0)]
    duration: Duration
    max_sessions: Annotated[int, msgspec.Meta(ge=1)]
    time_unit: Duration = "1s"


class RateStage(_Strict, frozen=True, kw_only=True):
    """Ramp the start rate linearly to ``target`` (per ``time-unit``) over ``duration``."""

    target: Annotated[float, msgspec.Meta(ge=0)]
    duration: Duration


class RampingSessionArrivalRate(
    _Scenario, frozen=True, kw_only=True, tag="ramping-session-arrival-rate"
):
    """Open model with the start rate ramped through ``stages`` (k6's ramping-arrival-rate)."""

    stages: Annotated[tuple[RateStage, ...], msgspec.Meta(min_length=1)]
    max_sessions: Annotated[int, msgspec.Meta(ge=1)]
    start_rate: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    time_unit: Duration = "1s"


Executor: TypeAlias = (
    ConstantSessions
    | RampingSessions
    | PerSessionIterations
    | SessionArrivalRate
    | RampingSessionArrivalRate
)


# ------------------------------------------------------------------------ the file


class RunSection(_Strict, frozen=True, kw_only=True):
    """``[run]``: where the sessions go and how the run replays.

    Attributes:
        target: ``embedded`` (the simulator with its scripted recognizer, in a process of
            its own) or the service's inference URL (``ws://`` or ``wss://``).
        seed: seeds every random choice (fault shares, backoff jitter, fault plans).
        history_interval: how often ``history.csv`` gets a row per metric.
    """

    target: str = "embedded"
    seed: int = 0
    history_interval: Duration = "10s"

    def __post_init__(self) -> None:
        if self.target != "embedded" and not re.match(r"^wss?://[^/\s]+", self.target):
            raise ValueError(
                f"target {self.target!r} is neither 'embedded' nor a ws:// or wss:// URL"
            )
        if seconds(self.history_interval) < 1.0:
            raise ValueError("history-interval must be at least 1s")


class ThresholdSpec(_Strict, frozen=True, kw_only=True):
    """k6's object form: ``{ threshold = "p(95)<800", abort-on-fail = true }``."""

    threshold: str
    abort_on_fail: bool = False
    delay_abort_eval: Duration = "0s"


class ScenarioFile(_Strict, frozen=True, kw_only=True):
    """The whole file: ``[run]``, the ``[[scenario]]`` entries and ``[thresholds]``."""

    scenarios: Annotated[tuple[Executor, ...], msgspec.Meta(min_length=1)] = msgspec.field(
        name="scenario"
    )
    run: RunSection = RunSection()
    # Tables stay raw here so a bad one is refused with its key (msgspec cannot name a
    # dict key in its paths); :meth:`threshold_items` gives them as ThresholdSpecs.
    thresholds: dict[str, tuple[str | dict[str, Any], ...]] = {}

    def threshold_items(self) -> list[tuple[str, ThresholdSpec]]:
        """Every expression as ``(metric key, ThresholdSpec)``, in file order."""
        out = []
        for key, items in self.thresholds.items():
            for item in items:
                spec = (
                    ThresholdSpec(threshold=item)
                    if isinstance(item, str)
                    else msgspec.convert(item, ThresholdSpec)
                )
                out.append((key, spec))
        return out

    def __post_init__(self) -> None:
        # Errors here are about the whole file, where msgspec adds no path: name it.
        from engine.scenario.thresholds import ThresholdError, parse_threshold

        seen: dict[str, int] = {}
        for i, scenario in enumerate(self.scenarios):
            if scenario.name in seen:
                raise ValueError(
                    f"scenario name {scenario.name!r} is already used by scenario[{seen[scenario.name]}]"
                    f" - at `$.scenario[{i}].name`"
                )
            seen[scenario.name] = i
        for key, expressions in self.thresholds.items():
            for j, item in enumerate(expressions):
                where = f"$.thresholds.{key}[{j}]"
                try:
                    spec = (
                        ThresholdSpec(threshold=item)
                        if isinstance(item, str)
                        else msgspec.convert(item, ThresholdSpec)
                    )
                    parse_threshold(key, spec.threshold, scenarios=frozenset(seen))
                except msgspec.ValidationError as exc:
                    message, _, path = str(exc).partition(" - at `$")
                    raise ValueError(f"{message} - at `{where}{path.rstrip('`')}`") from None
                except ThresholdError as exc:
                    raise ValueError(f"{exc} - at `{where}`") from None


# ------------------------------------------------------------------------- loading


def decode_scenario(raw: bytes | str, *, origin: str = "scenario") -> ScenarioFile:
    """Decode TOML into a :class:`ScenarioFile`.

    Raises:
        ConfigError: one line, ``origin: what - at `$.path```.
    """
    return decode_toml(raw, ScenarioFile, origin=origin)


def load_scenario(path: str | os.PathLike[str]) -> ScenarioFile:
    """Read and decode a scenario file (blocking; small)."""
    return read_toml(path, ScenarioFile)


ExecutorName: TypeAlias = Literal[
    "constant-sessions",
    "ramping-sessions",
    "per-session-iterations",
    "session-arrival-rate",
    "ramping-session-arrival-rate",
]
