"""The pocketsphinx worker process of :class:`~.sphinx.SphinxRecognizer`.

Run as ``python -m adapters.recognizers._sphinx_worker``. pocketsphinx holds the GIL
while it decodes, so it lives in its own process and talks over its stdin/stdout:
each message is a 4-byte big-endian length followed by a msgpack body. Every
:data:`Request` gets exactly one :class:`Reply`, in order. A request that fails gets
a reply with ``error`` set; the worker itself keeps serving. End of stdin ends it.

One worker serves many sessions; each has its own Endpointer and, from its first
speech on, its own Decoder (decoders of closed sessions are reused, with the cepstral
mean reset to the model's, so results do not depend on earlier sessions).
"""

from __future__ import annotations

import os
import re
import signal
import sys
from typing import IO, TYPE_CHECKING, Any, Final

import msgspec
import numpy as np

from .base import Hypothesis, RecognizedWord

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = [
    "Close",
    "Feed",
    "Flush",
    "Open",
    "Reply",
    "Request",
    "SphinxStream",
    "leave_shutdown_to_parent",
    "main",
    "serve",
]

MODEL_RATE: Final = 16000
MAX_FRAME: Final = 64 * 1024 * 1024
_IDLE_DECODERS: Final = 2
_SILENT_SAMPLE: Final = bytes(2)
_ALT_PRONUNCIATION = re.compile(r"\(\d+\)$")


class Open(msgspec.Struct, frozen=True, tag=True):
    sid: int
    sample_rate: int


class Feed(msgspec.Struct, frozen=True, tag=True):
    sid: int
    pcm: bytes


class Flush(msgspec.Struct, frozen=True, tag=True):
    sid: int


class Close(msgspec.Struct, frozen=True, tag=True):
    sid: int


Request = Open | Feed | Flush | Close


class Reply(msgspec.Struct, frozen=True):
    hypotheses: list[Hypothesis] = []
    error: str | None = None


def clean_word(token: str) -> str | None:
    """A decoder token as a lowercase word, or None for silence and filler tokens."""
    if token.startswith(("<", "[", "+")):
        return None
    return _ALT_PRONUNCIATION.sub("", token).lower() or None


class SphinxStream:
    """One session: resampler, endpointer and decoder. Synchronous and CPU-bound.

    Times are ms from the session's first sample. ``feed`` accepts any chunking of int16
    LE mono PCM; the partial (text and words of the best path so far) is checked once per
    ``feed`` and emitted when its text changed. The decoder is taken from ``get_decoder``
    when speech first starts, so a silent session costs no model memory.
    """

    def __init__(self, get_decoder: Callable[[], Any], sample_rate: int) -> None:
        import pocketsphinx
        import soxr

        self.decoder: Any = None
        self._get_decoder = get_decoder
        self._ep = pocketsphinx.Endpointer(sample_rate=MODEL_RATE)
        self._frame_bytes: int = self._ep.frame_bytes
        self._ms_per_frame = 10.0
        self._resampler = (
            None
            if sample_rate == MODEL_RATE
            else soxr.ResampleStream(sample_rate, MODEL_RATE, 1, dtype="float32", quality="HQ")
        )
        self._odd_byte = b""
        self._buf = bytearray()
        self._index = 0
        self._utt_begin_ms = 0
        self._in_utt = False
        self._partial = ""

    def feed(self, pcm: bytes) -> list[Hypothesis]:
        self._buf += self._to_model_rate(pcm, last=False)
        out: list[Hypothesis] = []
        self._process_frames(out)
        if self._in_utt:
            words = tuple(self._words(self.decoder.seg()))
            text = " ".join(w.text for w in words)
            if text and text != self._partial:
                self._partial = text
                out.append(Hypothesis(self._index, self._utt_begin_ms, None, text, words))
        return out

    def flush(self) -> list[Hypothesis]:
        self._buf += self._to_model_rate(b"", last=True)
        out: list[Hypothesis] = []
        self._process_frames(out)
        if self._ep.in_speech:
            # end_stream takes the last frame, 1 to frame_bytes bytes: its Cython wrapper
            # refuses an empty buffer (IndexError) whenever the audio so far fills whole
            # frames. Then the last frame is one silent sample (62.5 µs, never a word).
            speech = self._ep.end_stream(bytes(self._buf) or _SILENT_SAMPLE)
            if speech is not None:
                self._process(speech)
        self._buf.clear()
        if self._in_utt:
            self._end_utt(out)
        return out

    def close(self) -> None:
        if self._in_utt:
            self._in_utt = False
            self.decoder.end_utt()

    def _to_model_rate(self, pcm: bytes, *, last: bool) -> bytes:
        data = self._odd_byte + pcm
        self._odd_byte = data[len(data) & ~1 :]
        data = data[: len(data) & ~1]
        if self._resampler is None:
            return data
        x = np.frombuffer(data, "<i2").astype(np.float32) / 32768
        y = self._resampler.resample_chunk(x, last=last)
        return bytes(np.clip(np.round(y * 32768), -32768, 32767).astype("<i2").tobytes())

    def _process_frames(self, out: list[Hypothesis]) -> None:
        n = self._frame_bytes
        whole = len(self._buf) - len(self._buf) % n
        for i in range(0, whole, n):
            speech = self._ep.process(bytes(self._buf[i : i + n]))
            if speech is not None:
                self._process(speech)
                if not self._ep.in_speech:
                    self._end_utt(out)
        del self._buf[:whole]

    def _process(self, speech: bytes) -> None:
        if not self._in_utt:
            if self.decoder is None:
                self.decoder = self._get_decoder()
                self._ms_per_frame = 1000 / int(self.decoder.config["frate"])
            self._in_utt = True
            self._utt_begin_ms = round(self._ep.speech_start * 1000)
            self.decoder.start_utt()
        self.decoder.process_raw(speech)

    def _end_utt(self, out: list[Hypothesis]) -> None:
        self._in_utt = False
        self._partial = ""
        self.decoder.end_utt()
        words = tuple(self._words(self.decoder.seg()))
        if words:
            text = " ".join(w.text for w in words)
            out.append(
                Hypothesis(self._index, self._utt_begin_ms, words[-1].end_ms, text, words, True)
            )
            self._index += 1

    def _words(self, segments: Iterable[Any] | None) -> Iterable[RecognizedWord]:
        for seg in segments or ():  # None before the search has a path
            word = clean_word(seg.word)
            if word:
                begin = self._utt_begin_ms + round(seg.start_frame * self._ms_per_frame)
                end = self._utt_begin_ms + round((seg.end_frame + 1) * self._ms_per_frame)
                yield RecognizedWord(begin, end, word)


class _Server:
    def __init__(self) -> None:
        self._sessions: dict[int, SphinxStream] = {}
        self._idle: list[Any] = []
        self._initial_cmn: str | None = None

    def handle(self, request: Request) -> Reply:
        match request:
            case Open(sid, sample_rate):
                if sid in self._sessions:
                    raise ValueError(f"session {sid} is already open")
                self._sessions[sid] = SphinxStream(self._decoder, sample_rate)
                return Reply()
            case Feed(sid, pcm):
                return Reply(self._session(sid).feed(pcm))
            case Flush(sid):
                return Reply(self._session(sid).flush())
            case Close(sid):
                stream = self._sessions.pop(sid, None)
                if stream is not None:
                    stream.close()
                    if stream.decoder is not None and len(self._idle) < _IDLE_DECODERS:
                        self._idle.append(stream.decoder)
                return Reply()

    def _session(self, sid: int) -> SphinxStream:
        try:
            return self._sessions[sid]
        except KeyError:
            raise ValueError(f"no open session {sid}") from None

    def _decoder(self) -> Any:
        if self._idle:
            decoder = self._idle.pop()
            decoder.set_cmn(self._initial_cmn)
            return decoder
        import pocketsphinx

        decoder = pocketsphinx.Decoder(loglevel="FATAL")
        if self._initial_cmn is None:
            self._initial_cmn = decoder.get_cmn()
        return decoder


def _read_exact(stream: IO[bytes], n: int) -> bytes | None:
    data = stream.read(n)
    if len(data) < n:
        return None
    return data


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """Answer requests from ``stdin`` on ``stdout`` until ``stdin`` ends.

    A parent that is gone (end of ``stdin``, or a broken pipe on ``stdout``) ends it
    quietly: the worker never outlives its parent.
    """
    server = _Server()
    decoder = msgspec.msgpack.Decoder(Request)
    encoder = msgspec.msgpack.Encoder()
    while (header := _read_exact(stdin, 4)) is not None:
        size = int.from_bytes(header, "big")
        if size > MAX_FRAME or (body := _read_exact(stdin, size)) is None:
            return
        try:
            reply = server.handle(decoder.decode(body))
        except Exception as exc:
            reply = Reply(error=f"{type(exc).__name__}: {exc}")
        payload = encoder.encode(reply)
        try:
            stdout.write(len(payload).to_bytes(4, "big") + payload)
            stdout.flush()
        except BrokenPipeError:
            return


def leave_shutdown_to_parent() -> None:
    """Ignore SIGINT and SIGTERM: the parent decides when we stop (see
    :mod:`adapters.children`, which also starts the worker with both blocked). End
    of stdin and SIGKILL still end the worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def main() -> None:
    leave_shutdown_to_parent()
    # Keep fd 1 for replies only: stray prints and C-level logging go to stderr.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
