"""``steno listen --to``: live capture translated, the voice played and saved (virtual time).

The fake PortAudio stands in for a microphone and a speaker; the simulator runs
in memory with the tone-coded recognizer and a scripted translation table.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import trio
from conftest import deadline

from adapters.audio.fakeportaudio import FAKE_MIC, FAKE_SPEAKER, FakeBackend
from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.tonecode import synthesize
from adapters.sim.config import SimConfig
from adapters.sim.memory import open_memory_net
from adapters.sim.translate import ScriptedTranslator
from engine.actors import mic, playback
from engine.config import Secret, SessionConfig, TranslationOptions
from engine.errors import ConfigError
from engine.events import Event, Final, StreamEnded, Translation
from engine.live import LiveStreamConfig, run_live_stream

RATE = 48000
BLOCK = 4800
SENTENCES = ["good morning", "the weather is sunny today", "thank you"]
DE = ["Guten Morgen.", "Heute ist das Wetter sonnig.", "Danke."]
TABLE = ScriptedTranslator([{"en": en, "de": de} for en, de in zip(SENTENCES, DE, strict=True)])
LIVE = "qwen3.5-livetranslate-flash-realtime"


async def inline(fn: Callable[[], Any]) -> Any:
    return fn()


@deadline(120)
async def test_live_translation_is_played_and_saved(autojump_clock: Any, tmp_path: Path) -> None:
    audio = synthesize(SENTENCES, RATE).astype(np.float32) / 32768
    backend = FakeBackend([FAKE_MIC, FAKE_SPEAKER], default_output=1)
    config = LiveStreamConfig(
        session=SessionConfig(
            stream="mic",
            model=LIVE,
            url="ws://sim/api-ws/v1/inference",
            api_key=Secret("sk"),
            translation=TranslationOptions(targets=("de",), speech=True, vad_silence_ms=400),
            seed=3,
        ),
        mic=mic.MicConfig(stream="mic", stall_timeout_s=None),
        out_dir=str(tmp_path),
        output_stem="room",
        voice_dir=str(tmp_path),
        playback=playback.PlaybackConfig(stream="mic", stall_timeout_s=None),
    )
    console_send, console_recv = trio.open_memory_channel[Event](10_000)
    drain = trio.Event()
    ended: list[StreamEnded] = []
    played = bytearray()

    done = trio.Event()

    async def speaker() -> None:  # PortAudio pulling blocks from the output callback
        while not done.is_set():
            await trio.sleep(0.02)
            if backend.output_streams and backend.output.active:
                data = backend.output.pull(480)
                if data is not None:
                    played.extend(data)

    sim = SimConfig(api_keys=["sk"])
    async with open_memory_net(sim, ScriptedRecognizer.tone(), translator=TABLE) as net:
        async with trio.open_nursery() as nursery:

            async def live() -> None:
                ended.append(
                    await run_live_stream(
                        config,
                        console=console_send,
                        drain=drain,
                        dial=net.dial,
                        backend=backend,
                        run_blocking=inline,
                    )
                )

            nursery.start_soon(live)
            while not backend.streams:  # noqa: ASYNC110 - the device opens in a worker thread
                await trio.sleep(0.01)
            nursery.start_soon(speaker)
            for at in range(0, len(audio), BLOCK):
                await trio.sleep(BLOCK / RATE)
                chunk = audio[at : at + BLOCK]
                backend.stream.feed(np.stack([chunk, chunk], axis=1))
            await trio.sleep(3)
            drain.set()
            events = [e async for e in console_recv]
            done.set()
    finals = [e for e in events if isinstance(e, Final)]
    assert [f.text.rstrip(".").lower() for f in finals] == SENTENCES
    translations = [e for e in events if isinstance(e, Translation) and e.final]
    assert [(t.sentence_id, t.text) for t in translations] == [(1, DE[0]), (2, DE[1]), (3, DE[2])]
    (end,) = ended
    assert (end.status, end.audio_lost_ms) == ("ok", 0)
    # the voice went to the speaker and to the WAV
    assert np.abs(np.frombuffer(bytes(played), dtype="<i2")).max() > 1000
    voice, rate = sf.read(tmp_path / "room.voice.wav", dtype="int16")
    assert rate == 24000 and len(voice) > rate  # more than a second of translated voice
    srt = (tmp_path / "room.srt").read_text()
    for en, de in zip(SENTENCES, DE, strict=True):
        assert re.search(rf"{en}\.?\n{re.escape(de)}\n", srt, re.IGNORECASE)
    assert (tmp_path / "room.de.txt").read_text().splitlines() == DE


class TestListenOptions:
    def parser(self) -> argparse.ArgumentParser:
        from engine.cli import build_parser

        return build_parser()

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["--to", "zh", "--model", "paraformer-realtime-v2"], "does not translate"),
            (["--play"], "need --to LANG"),
            (["--to", "zh", "--play"], "text only, no translated speech"),
            (["--to", "xx", "--model", LIVE], "cannot translate into 'xx'"),
            (["--to", "zh,en", "--model", LIVE], "one language per stream"),
            (["--model", LIVE], "needs a target language"),
            (["--to", "de", "--model", LIVE, "--play", "headphones"], "no output device matching"),
        ],
    )
    async def test_refused_before_connecting(self, argv: list[str], message: str) -> None:
        from engine.cli.listen import listen

        args = self.parser().parse_args(["listen", "--url", "ws://127.0.0.1:9/x", *argv])
        backend = FakeBackend([FAKE_MIC, FAKE_SPEAKER], default_output=1)
        with pytest.raises(ConfigError, match=re.escape(message)):
            await listen(args, backend=backend, dial=_no_dial)

    def test_defaults_follow_the_translation(self) -> None:
        args = self.parser().parse_args(["listen"])
        assert args.model is None and args.to is None and args.play is None
        args = self.parser().parse_args(["listen", "--to", "de", "--play"])
        assert args.play == ""


async def _no_dial(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("listen must not connect when its options are wrong")
