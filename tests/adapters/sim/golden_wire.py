"""What the simulator sends for fixed audio over TCP (the hub's path): the golden cases.

A test (``test_golden_wire.py``) replays every case against ``open_simulator`` and
compares each server message, byte for byte, with ``golden/inference_wire.json``, recorded from
the simulator before its per-frame path was rewritten for speed (#11): the scripted
recognizer's transcripts and every byte of their JSON must not change.

Record again (only when the wire output is *meant* to change)::

    python tests/adapters/sim/golden_wire.py   # writes golden/inference_wire.json

The audio is sent as fast as the socket takes it: the scripted recognizer's results do
not depend on chunking or timing, and no timer (idle, silence, heartbeat) comes due.
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any, Final

import msgspec
import numpy as np
import trio

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.tonecode import synthesize
from adapters.sim import SimConfig
from adapters.sim.server import INFERENCE_PATH, open_simulator
from adapters.websocket.frames import Opcode, build_frame

GOLDEN: Final = pathlib.Path(__file__).parent / "golden" / "inference_wire.json"
BENCH_SENTENCES: Final = [
    "good morning",
    "the weather today is sunny",
    "the train leaves at seven",
    "thank you",
]
_MASK: Final = b"\x9a\x1f\x05\xc3"
_UPGRADE: Final = (
    f"GET {INFERENCE_PATH} HTTP/1.1\r\nHost: sim\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\nAuthorization: Bearer golden\r\n\r\n"
).encode()


class Case(msgspec.Struct, frozen=True):
    """One task: its audio, how it is cut into messages, and its run-task parameters."""

    name: str
    pcm: bytes
    rate: int
    chunk_bytes: int
    model: str = "paraformer-realtime-v2"
    parameters: dict[str, Any] = {}


def _noisy(rate: int) -> bytes:
    """Tone speech under a low noise floor, with a click (too short for a sentence) and
    a burst of loud noise (speech the tone decoder cannot read)."""
    rng = np.random.default_rng(11)
    tone = synthesize(["hello world", "one two three"], rate).astype(np.int32)
    tone += rng.normal(0, 30, len(tone)).astype(np.int32)
    click = np.zeros(rate // 2, np.int32)
    click[rate // 10 : rate // 10 + rate // 50] = 9000
    burst = rng.normal(0, 4000, rate * 3 // 10).astype(np.int32)
    quiet = np.zeros(rate, np.int32)
    audio = np.concatenate([tone, click, quiet, burst, quiet, tone])
    return np.clip(audio, -32768, 32767).astype("<i2").tobytes()


def cases() -> list[Case]:
    """The golden cases: the capacity bench's audio and the paths around it."""
    bench = synthesize(BENCH_SENTENCES, 16000).tobytes()
    frame = 3200  # 100 ms at 16 kHz
    looped = bench + bench[: len(bench) // 2]
    return [
        Case("bench audio, 100 ms frames", looped, 16000, frame),
        Case("bench audio from its 7th frame", looped[7 * frame :], 16000, frame),
        Case("bench audio, odd-sized messages", bench, 16000, 1001),
        Case("bench audio, 40 ms frames", bench, 16000, 1280),
        Case(
            "8 kHz, 50 ms frames",
            synthesize(["hello world", "the weather today is sunny and warm"], 8000).tobytes(),
            8000,
            800,
        ),
        Case("noise, a click and unreadable speech", _noisy(16000), 16000, frame),
        Case(
            "gummy with translations",
            bench,
            16000,
            frame,
            "gummy-realtime-v1",
            {"translation_enabled": True, "translation_target_languages": ["zh"]},
        ),
    ]


def _text_frame(obj: dict[str, Any]) -> bytes:
    return build_frame(Opcode.TEXT, msgspec.json.encode(obj), mask=_MASK)


async def _server_messages(stream: trio.SocketStream, buf: bytearray) -> list[bytes]:
    """Whole (unmasked, unfragmented) server messages, reading once if none is buffered."""
    while True:
        out: list[bytes] = []
        while len(buf) >= 2:
            n, at = buf[1] & 0x7F, 2
            if n == 126:
                n, at = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                n, at = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < at + n:
                break
            if buf[0] & 0x0F == Opcode.CLOSE:
                if out:  # the messages before the close first; the next call raises
                    return out
                raise ConnectionError(f"closed by the simulator: {bytes(buf[at : at + n])!r}")
            out.append(bytes(buf[at : at + n]))
            del buf[: at + n]
        if out:
            return out
        data = await stream.receive_some(1 << 16)
        if not data:
            raise ConnectionError("the simulator closed the socket")
        buf += data


async def transcribe(port: int, case: Case) -> list[str]:
    """Every server message of one task, as sent, in order (``task-finished`` last)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(_UPGRADE)
        head = b""
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some(1 << 16)
        head, _, rest = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        buf = bytearray(rest)
        header = {"action": "run-task", "task_id": "golden", "streaming": "duplex"}
        params = {"format": "pcm", "sample_rate": case.rate, **case.parameters}
        payload = {
            "task_group": "audio",
            "task": "asr",
            "function": "recognition",
            "model": case.model,
            "parameters": params,
            "input": {},
        }
        await stream.send_all(_text_frame({"header": header, "payload": payload}))
        messages: list[str] = []
        ended = ('"event":"task-finished"', '"event":"task-failed"')
        pcm = case.pcm
        for i in range(0, len(pcm), case.chunk_bytes):
            message = pcm[i : i + case.chunk_bytes]
            await stream.send_all(build_frame(Opcode.BINARY, message, mask=_MASK))
        finish = {"header": {**header, "action": "finish-task"}, "payload": {"input": {}}}
        await stream.send_all(_text_frame(finish))
        while not messages or not any(end in messages[-1] for end in ended):
            messages += [m.decode() for m in await _server_messages(stream, buf)]
        return messages


async def record_all() -> dict[str, list[str]]:
    """Every case's server messages, from a TCP simulator with the tone recognizer."""
    recognizer = ScriptedRecognizer.tone()
    async with open_simulator(SimConfig(), recognizer) as sim:
        return {case.name: await transcribe(sim.port, case) for case in cases()}


if __name__ == "__main__":
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else GOLDEN
    out.write_text(json.dumps(trio.run(record_all), indent=1, ensure_ascii=False) + "\n")
