"""The per-result stages of ``tools/bench/stages.py``: decode, map, sink (and receive:
``_stage_receive.py``).

One result is a paraformer ``result-generated`` message with an eight-word sentence,
as the simulator sends it. Each stage uses the project's own code (imported when the
stage is made, so a checkout without it reports the stage absent).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.bench._measure import Measure, cpu_of
from tools.bench._stage_receive import RECEIVE_STAGES

_WORDS = ["the", "weather", "today", "is", "sunny", "and", "warm", "again"]
RESULT = json.dumps(
    {
        "header": {"task_id": "t1", "event": "result-generated", "attributes": {}},
        "payload": {
            "output": {
                "sentence": {
                    "begin_time": 500,
                    "end_time": None,
                    "text": "The weather today is sunny and warm again",
                    "sentence_id": 1,
                    "sentence_end": False,
                    "words": [
                        {
                            "begin_time": 500 + 220 * i,
                            "end_time": 680 + 220 * i,
                            "text": w,
                            "punctuation": "",
                        }
                        for i, w in enumerate(_WORDS)
                    ],
                }
            },
            "usage": None,
        },
    }
)
STARTED = json.dumps({"header": {"task_id": "t1", "event": "task-started", "attributes": {}}})


def _loop(fn: Callable[[], object]) -> Measure:
    """``fn`` ``items`` times; nothing it returns is kept (a kept result would make the
    cyclic garbage collector's passes, not the stage, the cost)."""

    def loop(items: int) -> None:
        for _ in range(items):
            fn()

    return lambda items: cpu_of(lambda: loop(items))


def json_stage(directory: Path) -> Measure:
    return _loop(lambda: json.loads(RESULT))


def msgspec_stage(directory: Path) -> Measure:
    import msgspec

    from adapters.dashscope.messages import ServerMessage

    decoder = msgspec.json.Decoder(ServerMessage)
    return _loop(lambda: decoder.decode(RESULT))


def core_stage(directory: Path) -> Measure:
    """The protocol core's whole receive path: decode, interpret, state table, event."""
    from adapters.dashscope import messages as m
    from adapters.dashscope.inference import InferenceClient

    client = InferenceClient()
    client.send(m.RunTask("t1", "paraformer-realtime-v2", {}))
    client.receive_data(STARTED)
    list(client.events())

    def one() -> None:
        client.receive_data(RESULT)
        for _ in client.events():
            pass

    return _loop(one)


def _output() -> Any:
    import msgspec

    from adapters.dashscope.messages import ServerMessage

    message = msgspec.json.decode(RESULT, type=ServerMessage)
    return message.payload.output


def _final_output() -> Any:
    import msgspec

    return msgspec.structs.replace(
        _output(),
        sentence=msgspec.structs.replace(_output().sentence, end_time=2300, sentence_end=True),
    )


def results_of_stage(directory: Path) -> Measure:
    from adapters.dashscope.inference_connection import results_of

    output = _output()
    return _loop(lambda: results_of(output))


def transcript_stage(directory: Path) -> Measure:
    """A partial and a final through ``Transcript.map`` (µs per result, the mean of both)."""
    from adapters.dashscope.inference_connection import results_of
    from engine.actors._task import TaskResults
    from engine.actors._transcript import Transcript
    from engine.timeline import TaskClock

    [partial], [final] = results_of(_output()), results_of(_final_output())
    transcript = Transcript(16000, utterance=False, transcribes=True)
    task, clock = TaskResults(), TaskClock(0, 16000)

    def two() -> None:
        transcript.map(task, clock, partial, 0, "t1")
        transcript.map(task, clock, final, 0, "t1")

    def measure(items: int) -> float:
        pairs = max(1, items // 2)
        return _loop(two)(pairs) * items / (2 * pairs)  # CPU for ``items`` results

    return measure


def _events() -> tuple[Any, Any]:
    from engine.events import Final, Partial, Word

    words = tuple(Word(8000 + 3520 * i, 10880 + 3520 * i, w) for i, w in enumerate(_WORDS))
    text = "The weather today is sunny and warm again."
    return Partial(1, 8000, text, words, stream="s"), Final(1, 8000, 36800, text, words, stream="s")


def jsonl_stage(directory: Path) -> Measure:
    """Three partials and a final per four results, as a stream sends them."""
    from adapters.sinks.jsonl import JsonlSink

    partial, final = _events()

    def measure(items: int) -> float:
        sink = JsonlSink(directory / "bench.jsonl")

        def loop() -> None:
            for i in range(items):
                sink.write(final if i % 4 == 3 else partial)
            sink.close()

        return cpu_of(loop)

    return measure


def srt_stage(directory: Path) -> Measure:
    """Finals into an SRT file (a cue each; partials are not written)."""
    from adapters.sinks.subtitles import SrtSink

    _, final = _events()

    def measure(items: int) -> float:
        sink = SrtSink(directory / "bench.srt")

        def loop() -> None:
            for _ in range(items):
                sink.write(final)
            sink.close()

        return cpu_of(loop)

    return measure


RESULT_STAGES: list[tuple[str, str, Callable[[Path], Measure]]] = [
    ("decode.json_loads", "json.loads of the message (untyped reference)", json_stage),
    ("decode.msgspec_typed", "msgspec.json.Decoder(ServerMessage)", msgspec_stage),
    ("decode.protocol_core", "InferenceClient.receive_data + events()", core_stage),
    ("map.results_of", "wire output -> Heard (inference_connection.results_of)", results_of_stage),
    ("map.transcript", "Heard -> Partial/Final (Transcript.map)", transcript_stage),
    ("sink.jsonl", "JsonlSink.write, 3 partials : 1 final, close included", jsonl_stage),
    ("sink.srt", "SrtSink.write of a final, close included", srt_stage),
    *RECEIVE_STAGES,
]
