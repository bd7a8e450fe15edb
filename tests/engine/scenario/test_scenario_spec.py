"""The scenario file: the issue's example decodes; every bad key or value is refused with its path."""

from __future__ import annotations

import pathlib

import pytest

from engine.errors import ConfigError
from engine.scenario.spec import (
    ConstantSessions,
    PerSessionIterations,
    SessionArrivalRate,
    ThresholdSpec,
    decode_scenario,
    load_scenario,
    seconds,
)

ROOT = pathlib.Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "scenarios" / "example.toml"

GOOD = """
[[scenario]]
name = "a"
executor = "constant-sessions"
sessions = 2
duration = "10s"
audio = { file = "x.wav" }
"""


def refusal(toml: str) -> str:
    with pytest.raises(ConfigError) as info:
        decode_scenario(toml, origin="s.toml")
    message = str(info.value)
    assert "\n" not in message
    return message


class TestExample:
    def test_the_issue_example_decodes(self) -> None:
        """scenarios/example.toml (the issue's file, as written) decodes into its two executors."""
        file = load_scenario(EXAMPLE)
        rooms, callers = file.scenarios
        assert isinstance(rooms, PerSessionIterations)
        assert (rooms.sessions, rooms.iterations, rooms.model) == (50, 1, "paraformer-realtime-v2")
        assert rooms.audio.reference == "scenarios/audio/numbers.txt"
        assert isinstance(callers, SessionArrivalRate)
        assert (callers.rate, callers.time_unit, callers.max_sessions) == (5, "1s", 100)
        assert seconds(callers.start_time) == 5.0
        assert callers.faults == "drop:at=3;first=1"
        assert file.run.seed == 7
        assert file.thresholds["wer"] == ("max<0.35",)
        for audio in ("numbers.wav", "numbers.txt", "weather.wav"):
            assert (ROOT / "scenarios" / "audio" / audio).is_file()

    def test_shipped_scenarios_decode(self) -> None:
        """Every scenarios/*.toml that is a scenario file decodes, and its audio is there."""
        for path in sorted((ROOT / "scenarios").glob("*.toml")):
            if path.name in ("daemon-example.toml", "translations.toml"):
                continue
            file = load_scenario(path)
            for s in file.scenarios:
                assert (ROOT / s.audio.file).is_file(), (path, s.audio.file)

    def test_every_executor_and_the_object_threshold_form(self) -> None:
        """All five executors and k6's { threshold, abort-on-fail } form decode."""
        file = decode_scenario(
            GOOD
            + """
[[scenario]]
name = "b"
executor = "ramping-sessions"
stages = [{ target = 3, duration = "5s" }, { target = 0, duration = "5s" }]
audio = { file = "x.wav", speed = 2.0, lead-silence = "1s", tail-silence = "500ms" }
faults = [{ at = "0s", plan = "drop:at=1", share = 0.5 }, { at = "3s", plan = "throttle" }]

[[scenario]]
name = "c"
executor = "ramping-session-arrival-rate"
start-rate = 1
stages = [{ target = 10, duration = "1m" }]
max-sessions = 5

[[scenario]]
name = "d"
executor = "per-session-iterations"
audio = { file = "x.wav" }

[thresholds]
"wer{scenario:b}" = [{ threshold = "max<0.5", abort-on-fail = true, delay-abort-eval = "10s" }]
""".replace("max-sessions = 5\n", 'max-sessions = 5\naudio = { file = "x.wav" }\n')
        )
        assert [s.executor_name for s in file.scenarios] == [
            "constant-sessions",
            "ramping-sessions",
            "ramping-session-arrival-rate",
            "per-session-iterations",
        ]
        ((key, spec),) = file.threshold_items()
        assert key == "wer{scenario:b}"
        assert spec == ThresholdSpec(
            threshold="max<0.5", abort_on_fail=True, delay_abort_eval="10s"
        )
        assert isinstance(file.scenarios[0], ConstantSessions)

    @pytest.mark.parametrize(
        ("text", "value"),
        [("500ms", 0.5), ("30s", 30.0), ("1m30s", 90.0), ("2h", 7200.0), ("1.5s", 1.5)],
    )
    def test_durations(self, text: str, value: float) -> None:
        """k6's duration strings become seconds."""
        assert seconds(text) == pytest.approx(value)


BAD: list[tuple[str, str, str]] = [
    # (what, edit of GOOD or a whole file, the path or words the refusal must name)
    ("unknown top-level key", GOOD + "\n[runn]\nseed = 1\n", "unknown field `runn`"),
    ("unknown [run] key", GOOD + '\n[run]\ntargte = "embedded"\n', "`$.run`"),
    ("bad target", GOOD + '\n[run]\ntarget = "http://x"\n', "`$.run`"),
    ("seed not an int", GOOD + '\n[run]\nseed = "7"\n', "`$.run.seed`"),
    ("short history interval", GOOD + '\n[run]\nhistory-interval = "10ms"\n', "`$.run`"),
    ("no scenario", "[run]\nseed = 1\n", "scenario"),
    (
        "unknown scenario key",
        GOOD.replace("sessions = 2", "sessions = 2\nvus = 3"),
        "`$.scenario[0]`",
    ),
    (
        "snake_case key",
        GOOD.replace('duration = "10s"', 'duration = "10s"\nstart_time = "1s"'),
        "`$.scenario[0]`",
    ),
    (
        "unknown executor",
        GOOD.replace("constant-sessions", "constant-vus"),
        "`$.scenario[0].executor`",
    ),
    ("zero sessions", GOOD.replace("sessions = 2", "sessions = 0"), "`$.scenario[0].sessions`"),
    ("missing duration", GOOD.replace('duration = "10s"\n', ""), "`$.scenario[0]`"),
    ("bad duration", GOOD.replace('"10s"', '"10 seconds"'), "`$.scenario[0].duration`"),
    ("duration as a number", GOOD.replace('"10s"', "10"), "`$.scenario[0].duration`"),
    ("bad name", GOOD.replace('name = "a"', 'name = "a b"'), "`$.scenario[0].name`"),
    (
        "unknown model",
        GOOD.replace('name = "a"', 'name = "a"\nmodel = "whisper"'),
        "`$.scenario[0]`",
    ),
    (
        "realtime model",
        GOOD.replace('name = "a"', 'name = "a"\nmodel = "qwen3.5-livetranslate-flash-realtime"'),
        "recognition model",
    ),
    (
        "unknown audio key",
        GOOD.replace('{ file = "x.wav" }', '{ file = "x.wav", volume = 2 }'),
        "`$.scenario[0].audio`",
    ),
    (
        "speed zero",
        GOOD.replace('{ file = "x.wav" }', '{ file = "x.wav", speed = 0 }'),
        "`$.scenario[0].audio`",
    ),
    ("missing audio", GOOD.replace('audio = { file = "x.wav" }\n', ""), "`$.scenario[0]`"),
    (
        "bad fault plan",
        GOOD.replace('name = "a"', 'name = "a"\nfaults = "explode:at=1"'),
        "`$.scenario[0]`",
    ),
    (
        "bad fault step",
        GOOD.replace('name = "a"', 'name = "a"\nfaults = [{ plan = "drop:at=1", share = 2 }]'),
        "`$.scenario[0].faults[0]`",
    ),
    (
        "unknown fault step key",
        GOOD.replace('name = "a"', 'name = "a"\nfaults = [{ plan = "drop", when = "1s" }]'),
        "`$.scenario[0].faults[0]`",
    ),
    (
        "rate zero",
        '[[scenario]]\nname = "a"\nexecutor = "session-arrival-rate"\nrate = 0\nduration = "1s"\nmax-sessions = 1\naudio = { file = "x.wav" }\n',
        "`$.scenario[0].rate`",
    ),
    (
        "missing max-sessions",
        '[[scenario]]\nname = "a"\nexecutor = "session-arrival-rate"\nrate = 1\nduration = "1s"\naudio = { file = "x.wav" }\n',
        "`max-sessions` - at `$.scenario[0]`",
    ),
    (
        "empty stages",
        '[[scenario]]\nname = "a"\nexecutor = "ramping-sessions"\nstages = []\naudio = { file = "x.wav" }\n',
        "`$.scenario[0].stages`",
    ),
    (
        "negative stage target",
        '[[scenario]]\nname = "a"\nexecutor = "ramping-sessions"\nstages = [{ target = -1, duration = "1s" }]\naudio = { file = "x.wav" }\n',
        "`$.scenario[0].stages[0].target`",
    ),
    (
        "unknown stage key",
        '[[scenario]]\nname = "a"\nexecutor = "ramping-sessions"\nstages = [{ target = 1, time = "1s" }]\naudio = { file = "x.wav" }\n',
        "`$.scenario[0].stages[0]`",
    ),
    ("duplicate names", GOOD + GOOD, "`$.scenario[1].name`"),
    ("bad threshold", GOOD + '\n[thresholds]\nwer = ["p95<1"]\n', "`$.thresholds.wer[0]`"),
    (
        "unknown threshold metric",
        GOOD + '\n[thresholds]\nlatency = ["p(95)<1"]\n',
        "`$.thresholds.latency[0]`",
    ),
    (
        "unknown scenario tag",
        GOOD + '\n[thresholds]\n"wer{scenario:zz}" = ["max<1"]\n',
        "no scenario is named 'zz'",
    ),
    ("percentile on a counter", GOOD + '\n[thresholds]\nerrors = ["p(95)<1"]\n', "counter"),
    ("percentile over 100", GOOD + '\n[thresholds]\nwer = ["p(101)<1"]\n', "0–100"),
    (
        "unknown threshold object key",
        GOOD + '\n[thresholds]\nwer = [{ threshold = "max<1", abortOnFail = true }]\n',
        "`$.thresholds.wer[0]`",
    ),
    ("not TOML", "[[scenario]\n", "s.toml"),
]


class TestRefusals:
    @pytest.mark.parametrize(("what", "toml", "where"), BAD, ids=[b[0] for b in BAD])
    def test_refused_with_the_key_path(self, what: str, toml: str, where: str) -> None:
        """Each bad key or value is one line naming where it is."""
        message = refusal(toml)
        assert message.startswith("s.toml: ")
        assert where in message, message

    def test_missing_file_is_one_line(self, tmp_path: pathlib.Path) -> None:
        """An unreadable file names its path."""
        with pytest.raises(ConfigError, match="cannot read"):
            load_scenario(tmp_path / "none.toml")
