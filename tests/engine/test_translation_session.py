"""Translation sessions end to end in memory (virtual time): gummy and livetranslate.

Real components: the session actor, trio-websocket, the simulator's handlers
and fault layer, the tone-coded recognizer and a scripted translation table.
Each final gets its translation under the same sentence id, whatever the
protocol's ordering, and transient faults change nothing: same finals, same
translations, same global times, 0 ms lost.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.tonecode import synthesize
from adapters.sim.config import SimConfig
from adapters.sim.faults import FaultPlan
from adapters.sim.memory import open_memory_net
from adapters.sim.translate import ScriptedTranslator
from engine.actors._silence import PRE_ROLL_S
from engine.config import TranslationOptions
from engine.events import (
    Event,
    Final,
    SessionOpened,
    StreamEnded,
    TaskMetrics,
    Translation,
)
from tests.engine.fault_plans import fired, transient_plan
from tests.engine.session_harness import fault_tolerant_config, stream_pcm

SENTENCES = [
    "good morning",
    "the weather is sunny today",
    "we will have the budget",
    "please stop the train",
    "thank you",
]
ZH = ["早上好。", "今天天气晴朗。", "我们会有预算。", "请停下火车。", "谢谢你。"]
TABLE = ScriptedTranslator([{"en": en, "zh": zh} for en, zh in zip(SENTENCES, ZH, strict=True)])
PCM = synthesize(SENTENCES, 16000)
FRAME = 1600
GUMMY = ["gummy-realtime-v1", "gummy-chat-v1"]
LIVE = "qwen3.5-livetranslate-flash-realtime"
ALL = [*GUMMY, LIVE]

pytestmark = pytest.mark.usefixtures("any_transport")  # both WebSocket client transports


async def translate(model: str, plan: FaultPlan | None, seed: int, **options: Any) -> list[Event]:
    options.setdefault("vad_silence_ms", 400)  # the tone clips pause ~0.7 s between sentences
    translation = TranslationOptions(targets=("zh",), source="en", **options)
    config = fault_tolerant_config(model, seed=seed, translation=translation)
    sim = SimConfig(api_keys=["sk"])
    async with open_memory_net(
        sim, ScriptedRecognizer.tone(), faults=plan, translator=TABLE
    ) as net:
        return await stream_pcm(PCM, config, net.dial)


def run(model: str, plan: FaultPlan | None = None, seed: int = 1, **options: Any) -> list[Event]:
    async def main() -> list[Event]:
        with trio.fail_after(3600):
            return await translate(model, plan, seed, **options)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def finals(events: list[Event]) -> list[tuple[int, str, int, int]]:
    return [(e.sentence_id, e.text, e.start, e.end) for e in events if isinstance(e, Final)]


def translations(events: list[Event]) -> list[tuple[int, str, str]]:
    return [
        (e.sentence_id, e.lang, e.text) for e in events if isinstance(e, Translation) and e.final
    ]


def bilingual(events: list[Event]) -> list[tuple[str, str]]:
    """(source, translation) per sentence id, joined the way a subtitle sink joins them."""
    texts = {sid: text for sid, text, _, _ in finals(events)}
    return [(texts[sid], text) for sid, _, text in translations(events)]


@pytest.mark.parametrize("model", ALL)
def test_every_final_gets_its_translation(model: str) -> None:
    events = run(model)
    got = finals(events)
    assert [text.rstrip(".").lower() for _, text, _, _ in got] == SENTENCES
    assert [sid for sid, *_ in got] == [1, 2, 3, 4, 5]
    assert [(src.rstrip(".").lower(), zh) for src, zh in bilingual(events)] == list(
        zip(SENTENCES, ZH, strict=True)
    )
    ended = next(e for e in events if isinstance(e, StreamEnded))
    assert (ended.status, ended.audio_lost_ms) == ("ok", 0)


def test_translation_previews_carry_the_sentence_in_progress() -> None:
    events = run("gummy-realtime-v1")
    final_ids = {sid for sid, *_ in finals(events)}
    previews = [e for e in events if isinstance(e, Translation) and not e.final]
    assert previews, "gummy sends translation partials"
    assert {p.sentence_id for p in previews} <= final_ids
    for p in previews:  # a preview grows towards its sentence's translation
        assert ZH[p.sentence_id - 1].startswith(p.text)


def test_gummy_chat_is_one_utterance_per_task() -> None:
    events = run("gummy-chat-v1")
    opened = [e for e in events if isinstance(e, SessionOpened)]
    metrics = [e for e in events if isinstance(e, TaskMetrics)]
    assert len(opened) >= len(SENTENCES)
    assert all(m.finals <= 1 for m in metrics)
    assert sum(m.finals for m in metrics) == len(SENTENCES)
    # each new task starts where the previous sentence ended, or later in the pause after
    # it (the silence trimmed after a final), keeping the pre-roll before the next onset:
    # the replay covers the rest
    spans = [(begin, end) for _, _, begin, end in finals(events)]
    keep = round(PRE_ROLL_S * 16000)
    for o in opened:
        if o.offset == 0:
            continue
        i = max(k for k, (_, end) in enumerate(spans) if end <= o.offset)
        end, onset = spans[i][1], spans[i + 1][0] if i + 1 < len(spans) else len(PCM)
        assert o.offset == end or o.offset <= onset - keep, (o.offset, end, onset)


@pytest.mark.parametrize("model", ALL)
def test_translation_only_streams_settle_on_translations(model: str) -> None:
    events = run(model, transcription=False)
    assert not finals(events)
    got = translations(events)
    assert [(sid, text) for sid, _, text in got] == list(enumerate(ZH, start=1))
    ended = next(e for e in events if isinstance(e, StreamEnded))
    assert (ended.status, ended.finals, ended.audio_lost_ms) == ("ok", 5, 0)


CLEAN: dict[str, list[Event]] = {}
TRIGGERS = {"gummy-chat-v1": (0.8, 8)}
"""Fault times and frame counts within each model's shortest connection, so they fire:
a gummy-chat task carries one utterance, and "good morning" is 0.9 s."""


@pytest.mark.parametrize("model", ALL)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**20), count=st.integers(1, 3), hits=st.integers(1, 3))
def test_transient_faults_change_nothing(model: str, seed: int, count: int, hits: int) -> None:
    """Seeded random plans on the first connections: same finals, translations and times.

    Every model gets its own examples (both protocols, 8 each: 15 examples sampled
    over 3 models once gave a model a single one), every drawn plan is used (made
    transient, tests/engine/fault_plans.py, not ``assume``d away), and a fault must
    fire in each. Planted bug it catches: faults that never fire — a fault-free run
    passed every example.
    """
    horizon_s, max_frames = TRIGGERS.get(model, (4.0, 30))
    plan = transient_plan(seed, count=count, hits=hits, horizon_s=horizon_s, max_frames=max_frames)
    if model not in CLEAN:
        CLEAN[model] = run(model)
    clean = CLEAN[model]
    with fired() as faults:
        events = run(model, plan, seed)
    event(f"faults fired: {min(len(faults), 3)}{'+' if len(faults) > 3 else ''}")
    assert faults, f"no fault of {plan} fired"
    assert finals(events) == finals(clean), plan
    assert translations(events) == translations(clean), plan
    ended = next(e for e in events if isinstance(e, StreamEnded))
    assert ended.audio_lost_ms == 0, plan


def test_events_round_trip_as_jsonl() -> None:
    from engine.events import decode_jsonl_line, encode_jsonl_line

    for item in run("gummy-realtime-v1"):
        if isinstance(item, Translation | Final):
            assert decode_jsonl_line(encode_jsonl_line(item)) == msgspec.structs.replace(item)
