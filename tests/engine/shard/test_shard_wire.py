"""``engine.shard._wire``: the parent-worker frames, sans-IO."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.config import Secret, SessionConfig
from engine.events import Final, Partial, StreamEnded, StreamError, Word
from engine.pipeline import FileStreamConfig
from engine.shard._wire import (
    MAX_FRAME_BYTES,
    Drain,
    Finished,
    Framer,
    FromWorker,
    Hello,
    Job,
    NoMore,
    Out,
    ProtocolViolation,
    Setup,
    Stop,
    ToWorker,
    Want,
)

TEMPLATE = FileStreamConfig(
    path="",
    session=SessionConfig(
        stream="", model="paraformer-realtime-v2", url="ws://127.0.0.1:1", api_key=Secret("sk-x")
    ),
    out_dir="/tmp/out",
    formats=("txt", "jsonl"),
    speed=None,
)

FROM_WORKER = [
    Hello(pid=1234),
    Want(n=64),
    Out(event=Partial(0, 0, "hel", stream="a.wav", t=1.5)),
    Out(event=Final(0, 0, 1600, "Hello.", words=(Word(0, 1600, "Hello"),), stream="a.wav")),
    Out(event=StreamError("input", "bad file", stream="b.wav")),
    Finished(index=3, ended=StreamEnded("ok", finals=2, stream="a.wav")),
]
TO_WORKER = [
    Setup(template=TEMPLATE, jobs=8, log_json=True, log_level=20),
    Setup(template=TEMPLATE, jobs=2, log_json=False, log_level=30, console_tty=False),
    Job(index=0, path="/x/a.wav", stream="a.wav", stem="a"),
    Drain(),
    NoMore(),
    Stop(),
]


def _receive(kind: object, data: bytes, split: int | None = None) -> list[object]:
    framer = Framer(kind)
    got: list[object] = []
    cuts = [data] if split is None else [data[i : i + split] for i in range(0, len(data), split)]
    for piece in cuts:
        framer.receive_data(piece)
        got.extend(framer.messages())
    return got


class TestFramer:
    @pytest.mark.parametrize(
        ("kind", "messages"), [(FromWorker, FROM_WORKER), (ToWorker, TO_WORKER)]
    )
    @pytest.mark.parametrize("split", [None, 1, 3, 7, 1000])
    def test_round_trip_in_any_split(
        self, kind: object, messages: list[object], split: int | None
    ) -> None:
        """Every message comes back equal, in order, however the pipe cuts the bytes."""
        out = Framer(kind)
        data = b"".join(out.frame(m) for m in messages)  # type: ignore[arg-type]
        assert _receive(kind, data, split) == messages

    @given(st.lists(st.integers(min_value=1, max_value=50), max_size=20))
    def test_round_trip_hypothesis(self, cuts: list[int]) -> None:
        """Arbitrary cut points never change what is received."""
        framer = Framer(FromWorker)
        data = b"".join(framer.frame(m) for m in FROM_WORKER)
        receiver = Framer(FromWorker)
        got: list[object] = []
        at = 0
        for cut in [*cuts, len(data)]:
            receiver.receive_data(data[at : at + cut])
            got.extend(receiver.messages())
            at += cut
        receiver.receive_data(data[at:])
        got.extend(receiver.messages())
        assert got == FROM_WORKER

    def test_the_key_travels_on_the_pipe_and_only_there(self) -> None:
        """Setup carries the API key (the worker needs it) and it decodes as a Secret."""
        (setup,) = _receive(ToWorker, Framer(ToWorker).frame(TO_WORKER[0]))
        assert isinstance(setup, Setup)
        assert setup.template.session.api_key == Secret("sk-x")
        assert "sk-x" not in repr(setup)

    def test_end_of_stream(self) -> None:
        """The end after whole frames is clean; inside a frame it is a violation."""
        data = Framer(ToWorker).frame(Job(index=1, path="p", stream="s", stem="s"))
        framer = Framer(ToWorker)
        framer.receive_data(data)
        framer.receive_data(b"")
        assert framer.closed
        assert len(list(framer.messages())) == 1
        cut = Framer(ToWorker)
        cut.receive_data(data[:-1])
        cut.receive_data(None)
        with pytest.raises(ProtocolViolation, match="inside a frame"):
            list(cut.messages())

    def test_garbage_is_a_violation(self) -> None:
        """A body that is not a message of the expected side, or an absurd length, is refused."""
        wrong_side = Framer(FromWorker).frame(Want(n=1))
        framer = Framer(ToWorker)
        framer.receive_data(wrong_side)
        with pytest.raises(ProtocolViolation, match="does not decode"):
            list(framer.messages())
        huge = Framer(ToWorker)
        huge.receive_data(struct.pack(">I", MAX_FRAME_BYTES + 1))
        with pytest.raises(ProtocolViolation, match="announced"):
            list(huge.messages())
        junk = Framer(ToWorker)
        junk.receive_data(struct.pack(">I", 3) + b"\xc1\xc1\xc1")
        with pytest.raises(ProtocolViolation):
            list(junk.messages())
