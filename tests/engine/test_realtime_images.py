"""Pictures on the realtime protocol (livetranslate's visual context), in memory, in virtual time.

Real components: the session actor and its ``RealtimeConnection``, trio-websocket,
the simulator's realtime handler (which checks and counts every picture, see
``adapters/sim/realtime_images.py``), the tone-coded recognizer and a scripted
translation table. A tap on the client's side of each WebSocket records what goes
up, in order: how much audio, and each picture with the time it left. The
simulator's own count of the pictures it accepted comes from its one
``realtime session ended`` log line per session.

A still JPEG goes through the real image feed (a small JPEG is used as it is, no
ffmpeg). A video's feed runs ffmpeg, whose real-time waits would let the autojump
clock race ahead, so the video tests swap the feed for a scripted one
(``ImageFrame``s at the feed's default 1 fps, or at its 2 fps maximum); the ffmpeg
feed itself is tested in ``tests/adapters/audio/test_images.py`` and, end to end,
in ``tests/e2e/test_cli_translate.py``.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import pathlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import msgspec
import pytest
import structlog
import trio
import trio.testing

from adapters.audio.images import MAX_FPS, ImageFrame
from adapters.dashscope.realtime_wire import (
    AnyClientFrame,
    AudioAppendFrame,
    FinishFrame,
    ImageAppendFrame,
)
from adapters.dashscope.transport import Headers, Transport
from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.sim.config import SimConfig
from adapters.sim.faults import Connections, DelayEvents, Drop, FaultPlan
from adapters.sim.memory import MemoryNet, open_memory_net
from engine.actors import _images
from engine.config import TranslationOptions
from engine.errors import Disconnected
from engine.events import Event, SessionOpened, StreamEnded, Translation
from tests.engine.session_harness import fault_tolerant_config, stream_pcm
from tests.engine.test_translation_session import PCM, TABLE, ZH

LIVE = "qwen3.5-livetranslate-flash-realtime"
RATE = 16000
FRAME = 1600  # 0.1 s of audio per AudioFrame
AUDIO_S = len(PCM) / RATE

TINY_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAgAAAQABAAD//gAQTGF2YzU5LjM3LjEwMAD/2wBDAAg+Pkk+SVVVVVVVVWRdZGhoaGRkZGRoaGhw"
    "cHCDg4NwcHBoaHBwfHyDg4+Tj4eHg4eTk5ubm7q6srLZ2eD/////xABKAAEAAAAAAAAAAAAAAAAAAAAAAQEAAAAAAAAA"
    "AAAAAAAAAAAAEAEAAAAAAAAAAAAAAAAAAAAAEQEAAAAAAAAAAAAAAAAAAAAA/8AAEQgACAAIAwEiAAIRAAMRAP/aAAwD"
    "AQACEQMRAD8AAA//2Q=="
)
"""An 8x8 grey JPEG (220 bytes, made by ffmpeg): used by the feed as it is."""


def picture(k: int) -> bytes:
    """A distinct fake JPEG for scripted feeds (the simulator checks only the JPEG start)."""
    return b"\xff\xd8\xff\xe0" + f"picture {k}".encode() + b"\xff\xd9"


# ------------------------------------------------------------------ the tap


class Picture(msgspec.Struct, frozen=True):
    t: float
    """When it left (trio time)."""
    audio_s: float
    """Seconds of audio sent on this connection before it."""
    jpeg: bytes


class Connection:
    """One tapped client WebSocket: passes everything through, records what goes up.

    ``break_at_picture=k`` breaks the connection under the k-th picture's send (0-based)
    the way a dropped network does: the reader's receive and that send both fail, at
    the same moment (the send wakes when the reader has failed, and raises at once).
    """

    def __init__(self, ws: Transport, break_at_picture: int | None = None) -> None:
        self._ws = ws
        self._break_at = break_at_picture
        self._broken = False
        self._reading: trio.CancelScope | None = None
        self._reader_failed = trio.Event()
        self.samples = 0
        self.pictures: list[Picture] = []
        self.pictures_at_finish: int | None = None  # pictures sent before session.finish

    @property
    def audio_s(self) -> float:
        return self.samples / RATE

    async def send(self, message: str | bytes) -> None:
        frame = msgspec.json.decode(message, type=AnyClientFrame)
        match frame:
            case AudioAppendFrame(audio=pcm):
                self.samples += len(pcm) // 2
            case ImageAppendFrame(image=jpeg):
                if len(self.pictures) == self._break_at:
                    await self._break()
                self.pictures.append(Picture(trio.current_time(), self.audio_s, jpeg))
            case FinishFrame():
                self.pictures_at_finish = len(self.pictures)
        await self._ws.send(message)

    def send_nowait(self, message: str | bytes) -> bool:
        return False  # every frame through send, where the tap looks at it

    async def receive(self) -> str | bytes:
        if not self._broken:
            with trio.CancelScope() as self._reading:
                message: str | bytes = await self._ws.receive()
                return message
        self._reader_failed.set()
        raise Disconnected("the tap broke the connection", code=1006)

    async def _break(self) -> None:
        self._broken = True
        if self._reading is not None:
            self._reading.cancel()
        await self._reader_failed.wait()
        raise Disconnected("the tap broke the connection", code=1006)

    async def ping(self) -> None:
        await self._ws.ping()

    async def aclose(self) -> None:
        await self._ws.aclose()


class Tap:
    """A dialer over a :class:`MemoryNet` that taps every connection it opens."""

    def __init__(self, net: MemoryNet, break_at_picture: int | None = None) -> None:
        self._net = net
        self._break_at = break_at_picture  # on the first connection
        self.connections: list[Connection] = []

    @contextlib.asynccontextmanager
    async def dial(
        self, url: str, headers: Headers, *, connect_timeout: float
    ) -> AsyncIterator[Transport]:
        async with self._net.dial(url, headers, connect_timeout=connect_timeout) as ws:
            connection = Connection(ws, None if self.connections else self._break_at)
            self.connections.append(connection)
            yield connection


# --------------------------------------------------------------- the harness


class Run(msgspec.Struct, frozen=True):
    events: list[Event]
    connections: list[Connection]
    accepted: list[int]
    """Pictures the simulator accepted, per session, in connection order."""

    @property
    def ended(self) -> StreamEnded:
        return next(e for e in self.events if isinstance(e, StreamEnded))

    @property
    def translations(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, Translation) and e.final]


class Options(msgspec.Struct, frozen=True, kw_only=True):
    plan: FaultPlan | None = None
    speed: float | None = 1.0
    """Audio pace, times real time; None: as fast as the session takes it."""
    start_s: float = 0.0
    """Virtual time at which the stream starts."""
    break_at_picture: int | None = None


async def _translate(image: str, options: Options) -> tuple[list[Event], Tap]:
    translation = TranslationOptions(targets=("zh",), source="en", image=image, vad_silence_ms=400)
    config = fault_tolerant_config(LIVE, translation=translation)
    await trio.sleep_until(options.start_s)
    async with open_memory_net(
        SimConfig(api_keys=["sk"]),
        ScriptedRecognizer.tone(),
        faults=options.plan,
        translator=TABLE,
    ) as net:
        tap = Tap(net, options.break_at_picture)
        events = await stream_pcm(PCM, config, tap.dial, speed=options.speed)
    return events, tap


def run(image: str, **options: Any) -> Run:
    async def main() -> tuple[list[Event], Tap]:
        with trio.fail_after(600):
            return await _translate(image, Options(**options))

    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        events, tap = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    ended = sorted(
        (entry["conn"], entry["images"])
        for entry in logs
        if entry["event"] == "realtime session ended"
    )
    return Run(events, tap.connections, [images for _, images in ended])


class ScriptedFeed:
    """A stand-in for an :class:`~adapters.audio.images.ImageFeed` that yields ``frames``."""

    def __init__(self, frames: Sequence[ImageFrame]) -> None:
        self._frames = iter(frames)

    def __aiter__(self) -> ScriptedFeed:
        return self

    async def __anext__(self) -> ImageFrame:
        await trio.lowlevel.checkpoint()
        try:
            return next(self._frames)
        except StopIteration:
            raise StopAsyncIteration from None


def scripted_feed(frames: Sequence[ImageFrame]) -> Callable[..., Any]:
    """A stand-in for ``open_image_feed`` that yields ``frames`` (a fresh feed per session)."""

    @contextlib.asynccontextmanager
    async def open_feed(path: str, **_: Any) -> AsyncIterator[ScriptedFeed]:
        yield ScriptedFeed(frames)

    return open_feed


def video(seconds: float, fps: float = MAX_FPS) -> list[ImageFrame]:
    """A video's pictures as the feed gives them: picture k at k / fps seconds."""
    return [ImageFrame(k / fps, picture(k)) for k in range(int(seconds * fps))]


@pytest.fixture(name="still")
def _still(tmp_path: pathlib.Path) -> str:
    path = tmp_path / "slide.jpg"
    path.write_bytes(TINY_JPEG)
    return str(path)


# --------------------------------------------------------------------- tests


@pytest.mark.usefixtures("any_transport")  # both WebSocket client transports
class TestStill:
    def test_goes_once_after_the_first_audio(self, still: str) -> None:
        """A still picture is sent once per session, only after audio went up, and accepted."""
        result = run(still)
        (connection,) = result.connections
        (sent,) = connection.pictures
        assert sent.jpeg == TINY_JPEG
        assert sent.audio_s > 0
        assert result.accepted == [1]
        assert (result.ended.status, result.ended.reconnects) == ("ok", 0)
        assert result.translations == ZH  # the picture changes nothing about the text

    def test_a_new_session_gets_the_picture_again(self, still: str) -> None:
        """After a dropped connection the replacement session is sent the picture too,
        again after its first audio."""
        plan = FaultPlan(faults=(Drop(at_s=3.0),), seed=3, connections=Connections(first_n=1))
        result = run(still, plan=plan)
        assert len(result.connections) == 2, result.ended
        for connection in result.connections:
            (sent,) = connection.pictures
            assert sent.jpeg == TINY_JPEG
            assert sent.audio_s > 0
        assert result.accepted == [1, 1]
        assert (result.ended.status, result.ended.reconnects, result.ended.audio_lost_ms) == (
            "ok",
            1,
            0,
        )
        assert result.translations == ZH


@pytest.mark.usefixtures("any_transport")  # both WebSocket client transports
class TestVideo:
    def test_pictures_go_in_step_with_the_audio(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """At the feed's default 1 fps, picture k goes once the audio sent reaches k s, and
        not an audio frame later."""
        frames = video(6.0, fps=1.0)
        monkeypatch.setattr(_images, "open_image_feed", scripted_feed(frames))
        result = run("talk.mp4")
        (connection,) = result.connections
        sent = connection.pictures
        assert [p.jpeg for p in sent] == [f.jpeg for f in frames]
        for frame, p in zip(frames, sent, strict=True):
            # the first picture waits for the first audio frame (0.1 s), the others for theirs
            assert frame.at_s <= p.audio_s <= max(frame.at_s, FRAME / RATE) + FRAME / RATE, (
                frame.at_s,
                p.audio_s,
            )
        assert result.accepted == [len(frames)]
        assert result.ended.status == "ok"

    def test_at_two_a_second_pictures_keep_the_protocols_pace(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A 2 fps video (the most the feed gives): no picture before its time in the audio,
        at most two a second of audio and of time, and the simulator accepts every one."""
        frames = video(6.0, fps=MAX_FPS)
        monkeypatch.setattr(_images, "open_image_feed", scripted_feed(frames))
        result = run("talk.mp4")
        (connection,) = result.connections
        sent = connection.pictures
        assert [p.jpeg for p in sent] == [f.jpeg for f in frames]
        assert all(p.audio_s >= f.at_s for f, p in zip(frames, sent, strict=True))
        assert all(p.audio_s >= k / MAX_FPS for k, p in enumerate(sent))
        for a, b in itertools.pairwise(sent):
            assert b.t - a.t >= 1 / MAX_FPS
        assert result.accepted == [len(frames)]  # no rate_limit_exceeded refusal
        assert result.ended.status == "ok"

    def test_a_new_session_starts_from_the_picture_in_force(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After a drop, the new session gets the newest picture before its offset first,
        then the later ones as the replayed and new audio reaches them."""
        frames = video(AUDIO_S, fps=1.0)
        monkeypatch.setattr(_images, "open_image_feed", scripted_feed(frames))
        plan = FaultPlan(faults=(Drop(at_s=3.4),), seed=3, connections=Connections(first_n=1))
        result = run("talk.mp4", plan=plan)
        first, second = result.connections
        offset_s = [e.offset / RATE for e in result.events if isinstance(e, SessionOpened)][1]
        assert offset_s > 0
        before = [f for f in frames if f.at_s < offset_s]
        later = [f for f in frames if f.at_s >= offset_s]
        assert before, "the drop must come after a picture"
        assert [p.jpeg for p in first.pictures] == [f.jpeg for f in frames[:4]]
        assert [p.jpeg for p in second.pictures] == [before[-1].jpeg] + [f.jpeg for f in later]
        for frame, p in zip([before[-1], *later], second.pictures, strict=True):
            assert p.audio_s > 0  # after the new session's first audio
            assert offset_s + p.audio_s >= frame.at_s  # never ahead of the audio
        assert result.accepted == [len(first.pictures), len(second.pictures)]
        assert (result.ended.status, result.ended.reconnects, result.ended.audio_lost_ms) == (
            "ok",
            1,
            0,
        )
        assert result.translations == ZH

    def test_pictures_still_waiting_stop_at_the_finish(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Audio sent faster than real time outruns the pictures' pace, and the server
        answers slowly: the pictures still waiting when session.finish goes are dropped
        (none follows the finish), and the session ends well, without a reconnect."""
        frames = video(AUDIO_S, fps=1.0)
        monkeypatch.setattr(_images, "open_image_feed", scripted_feed(frames))
        slow = FaultPlan(faults=(DelayEvents(delay_s=1.5),), seed=1)
        result = run("talk.mp4", plan=slow, speed=None)
        (connection,) = result.connections
        assert connection.pictures_at_finish == len(connection.pictures)
        assert 1 <= len(connection.pictures) < len(frames)
        assert [p.jpeg for p in connection.pictures] == [
            f.jpeg for f in frames[: len(connection.pictures)]
        ]
        assert (result.ended.status, result.ended.reconnects) == ("ok", 0)
        assert result.accepted == [len(connection.pictures)]
        assert result.translations == ZH

    @pytest.mark.parametrize("start_s", [0.0, 0.3, 1.3])
    def test_a_burst_of_pictures_stays_under_the_rate_limit(
        self, monkeypatch: pytest.MonkeyPatch, start_s: float
    ) -> None:
        """Audio at twice real time keeps a 2 fps video's pictures going back to back for
        seconds: the simulator refuses none (at most two within any second), whenever
        the stream started."""
        frames = video(AUDIO_S, fps=MAX_FPS)
        monkeypatch.setattr(_images, "open_image_feed", scripted_feed(frames))
        result = run("talk.mp4", speed=2.0, start_s=start_s)
        (connection,) = result.connections
        assert len(connection.pictures) >= 6
        assert result.accepted == [len(connection.pictures)]
        assert result.ended.status == "ok"

    def test_a_connection_breaking_under_a_picture_is_a_reconnect(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The socket fails while a picture is being sent: one failure for the session
        (which reconnects and loses nothing), not two at once from the picture sender
        and the reader."""
        frames = video(AUDIO_S, fps=1.0)
        monkeypatch.setattr(_images, "open_image_feed", scripted_feed(frames))
        result = run("talk.mp4", break_at_picture=3)
        assert len(result.connections) == 2
        assert (result.ended.status, result.ended.reconnects, result.ended.audio_lost_ms) == (
            "ok",
            1,
            0,
        )
        assert result.connections[1].pictures
        assert result.translations == ZH
