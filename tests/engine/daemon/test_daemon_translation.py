"""Translation streams in the daemon, in virtual time against the in-memory simulator.

Two streams of one daemon, each with its own model, translation and outputs:

* ``talk-zh``: gummy-realtime-v1 (inference protocol), English → Chinese,
  keep-alive idle policy;
* ``talk-de``: qwen3.5-livetranslate-flash-realtime (realtime protocol),
  English → German with the translated voice, suspend idle policy (the session
  is finished in every silence and reopened on speech).

The source is tone-coded speech the scripted recognizer decodes exactly, and a
scripted translation table gives every sentence a known translation, so the
bilingual rolling files can be checked line by line.
"""

from __future__ import annotations

import contextlib
import pathlib
import wave
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
from daemon_helpers import (
    KEY,
    _inline_threads,  # noqa: F401 - the inline_threads fixture
    config,
    memory_env,
    sentence,
    synthetic,
)

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.tonecode import split_words
from adapters.sim.config import SimConfig
from adapters.sim.memory import open_memory_net
from adapters.sim.translate import ScriptedTranslator
from engine.daemon.manager import Daemon
from engine.daemon.sources import SourceContext
from engine.events import AudioSkipped, Final, SessionOpened, Translation, decode_jsonl_line
from engine.messages import RawBlock

pytestmark = pytest.mark.usefixtures("inline_threads")

CYCLES, CYCLE_S = 4, 30.0
ZH = [f"第{k}句话。" for k in range(CYCLES)]
DE = [f"Satz Nummer {k}." for k in range(CYCLES)]
TABLE = ScriptedTranslator([{"en": sentence(k), "zh": ZH[k], "de": DE[k]} for k in range(CYCLES)])
# The wall clock of daemon_helpers starts at 2023-11-14T22:13:20Z: one hour's files.
HOUR = "20231114-22"

TOML = """
[daemon]
drain-deadline-s = 30

[[stream]]
id = "talk-zh"
model = "gummy-realtime-v1"
source = { kind = "file", path = "synthetic" }
outputs = { formats = ["jsonl", "srt", "vtt", "txt"] }
[stream.translation]
to = ["zh"]
from = "en"

[[stream]]
id = "talk-de"
model = "qwen3.5-livetranslate-flash-realtime"
source = { kind = "file", path = "synthetic" }
idle = { policy = "suspend", after-s = 5, preroll-ms = 500, finish-after-s = 1 }
outputs = { formats = ["jsonl", "srt", "txt"] }
[stream.translation]
to = ["de"]
from = "en"
speech = true
vad-silence-ms = 400
"""


def talk(
    spec: object, ctx: SourceContext
) -> contextlib.AbstractAsyncContextManager[AsyncIterator[RawBlock]]:
    """One sentence every 30 s, silence in between (the VAD and the gate hear it)."""
    source = synthetic(cycles=CYCLES, cycle_s=CYCLE_S, block_s=0.5, idle="silence")
    return source(spec, ctx)  # type: ignore[arg-type]


def events_of(out: pathlib.Path, stream: str) -> list[object]:
    return [
        decode_jsonl_line(line)
        for path in sorted(out.glob(f"{stream}-*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]


class TestTwoTranslationStreams:
    async def test_bilingual_rolling_outputs_per_stream(
        self, autojump_clock: trio.testing.MockClock, tmp_path: pathlib.Path
    ) -> None:
        """gummy → zh and livetranslate → de side by side: bilingual SRT/VTT, a TXT per
        language, the German voice as WAV; the suspended stream reopens its session."""
        out = tmp_path / "out"
        sim = SimConfig(api_keys=[KEY], feed_chunk_ms=500)
        async with open_memory_net(sim, ScriptedRecognizer.tone(), translator=TABLE) as net:
            daemon = Daemon(config(TOML, out), memory_env(net, {"file": talk}))
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.run)
                for handle in list(daemon.handles.values()):
                    with trio.fail_after(CYCLES * CYCLE_S + 120):
                        await handle.done.wait()
                daemon.request_drain()

        names = sorted(p.name for p in out.iterdir())
        assert names == sorted(
            [f"talk-zh-{HOUR}.{ext}" for ext in ("jsonl", "srt", "vtt", "txt", "zh.txt")]
            + [f"talk-de-{HOUR}.{ext}" for ext in ("jsonl", "srt", "txt", "de.txt", "voice.wav")]
        )
        source = [split_words(sentence(k)) for k in range(CYCLES)]
        for stream, lang, texts in (("talk-zh", "zh", ZH), ("talk-de", "de", DE)):
            stem = out / f"{stream}-{HOUR}"
            # Bilingual cues: the source line, then the translation, every sentence.
            cues = cue_texts(stem.with_suffix(".srt").read_text())
            assert [split_words(src) for src, _ in cues] == source, stream
            assert [tr for _, tr in cues] == texts, stream
            # One TXT per language: the source's, and the translation's.
            lines = stem.with_suffix(".txt").read_text().splitlines()
            assert [split_words(line) for line in lines] == source
            assert (out / f"{stream}-{HOUR}.{lang}.txt").read_text().splitlines() == texts
            events = events_of(out, stream)
            finals = [e for e in events if isinstance(e, Final)]
            translations = [e for e in events if isinstance(e, Translation) and e.final]
            assert [(t.lang, t.sentence_id) for t in translations] == [
                (lang, f.sentence_id) for f in finals
            ]
        vtt = (out / f"talk-zh-{HOUR}.vtt").read_text()
        assert vtt.startswith("WEBVTT\n\n1\n") and [tr for _, tr in cue_texts(vtt[8:])] == ZH

        zh, de = daemon.metrics["talk-zh"], daemon.metrics["talk-de"]
        assert (zh.finals, zh.translations, zh.tasks_opened) == (CYCLES, CYCLES, 1)
        assert (de.finals, de.translations) == (CYCLES, CYCLES)
        assert zh.audio_lost_s == de.audio_lost_s == 0.0

        # The suspend policy on the realtime protocol: every silence finishes the
        # session, the next sentence opens a new one further along the timeline.
        de_events = events_of(out, "talk-de")
        opened = [e.offset for e in de_events if isinstance(e, SessionOpened)]
        assert len(opened) == de.tasks_opened == CYCLES and opened == sorted(opened)
        skips = [e for e in de_events if isinstance(e, AudioSkipped)]
        assert len(skips) == CYCLES and {e.reason for e in skips} == {"suspended"}

        # The translated voice: one WAV for the hour, 24 kHz mono, all of it.
        with wave.open(str(out / f"talk-de-{HOUR}.voice.wav"), "rb") as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (24000, 1, 2)
            assert wav.getnframes() > 0
            assert wav.getnframes() / 24000 == pytest.approx(de.voice_s)
        assert zh.voice_s == 0.0


def cue_texts(srt: str) -> list[tuple[str, str]]:
    """(source, translation) per cue of a two-line bilingual SRT/VTT body."""
    cues = []
    for block in srt.strip().split("\n\n"):
        index, timing, *lines = block.split("\n")
        assert index.isdigit() and "-->" in timing, block
        assert len(lines) == 2, block
        cues.append((lines[0], lines[1]))
    return cues
