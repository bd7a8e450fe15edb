"""One file of a simulated batch task: fetch it, decode it, recognize it, shape its result.

The file comes from an ``http(s)://`` URL (downloaded with httpx into a
temporary file) or a ``file://`` URL (read in place; local work only). It is
decoded by :func:`~adapters.audio.files.open_audio_source` (soundfile, or
ffmpeg for containers), downmixed, resampled to 16 kHz and fed to the
simulator's recognizer like a realtime task's audio. The finals become the
result file of DASHSCOPE.md §6.3 — with SenseVoice tags in the text for
``sensevoice-v1``.

Every way a file can fail raises :class:`FileFailure` with the subtask's
``code``/``message``; the task's other files go on.
"""

from __future__ import annotations

import math
import pathlib
import shutil
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import httpx
import msgspec
import structlog
import trio

from adapters.audio.files import open_audio_source
from adapters.audio.resample import StreamResampler, float_to_pcm16
from engine.errors import InputError

from .shaping import sentence_output

if TYPE_CHECKING:
    from adapters.dashscope.batch import BatchModel
    from adapters.recognizers.base import Hypothesis, Recognizer

    from .restconfig import RestConfig

__all__ = [
    "FileFailure",
    "Recognized",
    "SimTask",
    "check_parameters",
    "recognize_file",
    "result_file",
    "run_task",
]

_log = structlog.get_logger()

RATE: Final = 16000
DOWNLOAD_FAILED: Final = "InvalidFile.DownloadFailed"
DECODE_FAILED: Final = "InvalidFile.DecodeFailed"
NO_SPEECH: Final = "SUCCESS_WITH_NO_VALID_FRAGMENT"


class FileFailure(Exception):
    """A subtask failure: ``code`` and ``message`` go into ``results[i]``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Recognized:
    """What recognizing one file gave."""

    finals: list[Hypothesis]
    rate: int
    channels: int
    duration_ms: int
    audio_format: str


async def recognize_file(
    url: str,
    recognizer: Recognizer,
    *,
    language: str | None,
    fetch_timeout_s: float,
    max_bytes: int,
    allow_file_urls: bool,
    feed_chunk_ms: int = 400,
) -> Recognized:
    """Fetch, decode and recognize the file at ``url``.

    Raises:
        FileFailure: unreachable or refused URL, not audio, no speech found.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if not allow_file_urls:
            raise FileFailure(DOWNLOAD_FAILED, "file:// URLs are turned off in this simulator")
        if parts.netloc not in ("", "localhost"):
            raise FileFailure(DOWNLOAD_FAILED, f"file:// URL on another host: {parts.netloc}")
        path = urllib.request.url2pathname(parts.path)
        return await _recognize(path, recognizer, language, feed_chunk_ms)
    if scheme not in ("http", "https"):
        raise FileFailure(DOWNLOAD_FAILED, f"the simulator cannot fetch {scheme}:// URLs")
    tmp = await trio.to_thread.run_sync(tempfile.mkdtemp, None, "steno-batch-")
    try:
        path = str(pathlib.Path(tmp) / ("audio" + pathlib.PurePosixPath(parts.path).suffix))
        await _download(url, path, fetch_timeout_s, max_bytes)
        return await _recognize(path, recognizer, language, feed_chunk_ms)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(shutil.rmtree, tmp, True)


async def _download(url: str, path: str, timeout_s: float, max_bytes: int) -> None:
    what = urllib.parse.urlsplit(url)._replace(query="", fragment="").geturl()
    try:
        with trio.fail_after(timeout_s):
            async with (
                httpx.AsyncClient(timeout=timeout_s, trust_env=False) as client,
                client.stream("GET", url, follow_redirects=True) as response,
            ):
                if response.status_code != 200:
                    raise FileFailure(
                        DOWNLOAD_FAILED, f"{what} answered HTTP {response.status_code}"
                    )
                size = 0
                async with await trio.open_file(path, "wb") as out:
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise FileFailure(DOWNLOAD_FAILED, f"{what} is over {max_bytes} bytes")
                        await out.write(chunk)
    except trio.TooSlowError:
        raise FileFailure(DOWNLOAD_FAILED, f"{what} did not arrive in {timeout_s:g} s") from None
    except (httpx.HTTPError, OSError) as exc:
        raise FileFailure(
            DOWNLOAD_FAILED, f"cannot download {what}: {exc or type(exc).__name__}"
        ) from None


async def _recognize(
    path: str, recognizer: Recognizer, language: str | None, feed_chunk_ms: int
) -> Recognized:
    try:
        source = await open_audio_source(path)
    except InputError as exc:
        code = DOWNLOAD_FAILED if "not found" in str(exc) else DECODE_FAILED
        raise FileFailure(code, str(exc)) from None
    chunk = RATE * 2 * feed_chunk_ms // 1000
    hyps: list[Hypothesis] = []
    samples = 0
    async with source:
        resampler = StreamResampler(source.rate, RATE)
        session = await recognizer.open_session(sample_rate=RATE, language=language)
        try:
            pending = bytearray()
            try:
                async for block in source:
                    samples += len(block)
                    pending += float_to_pcm16(resampler.process(block))
                    while len(pending) >= chunk:
                        hyps += await session.feed(bytes(pending[:chunk]))
                        del pending[:chunk]
            except InputError as exc:
                raise FileFailure(DECODE_FAILED, str(exc)) from None
            pending += float_to_pcm16(resampler.flush())
            if pending:
                hyps += await session.feed(bytes(pending))
            hyps += await session.flush()
        finally:
            with trio.CancelScope(shield=True):
                await session.aclose()
    finals = [h for h in hyps if h.final and h.text.strip()]
    if not finals:
        raise FileFailure(NO_SPEECH, "no valid speech found")
    suffix = pathlib.PurePath(path).suffix.lower().lstrip(".")
    return Recognized(
        finals,
        source.rate,
        source.channels,
        samples * 1000 // source.rate,
        "pcm_s16le" if suffix == "wav" else suffix or "unknown",
    )


def result_file(
    url: str, recognized: Recognized, model: BatchModel, parameters: dict[str, Any]
) -> dict[str, Any]:
    """The §6.3 result JSON (as a dict) of one recognized file.

    One transcript, for the first requested channel (the audio is downmixed);
    ``speaker_id`` with diarization (speakers take turns by sentence);
    sensevoice-v1 text carries ``<|Speech|><|NEUTRAL|>…<|/Speech|>`` and no words.
    """
    diarize = bool(parameters.get("diarization_enabled"))
    speakers = int(parameters.get("speaker_count") or 2)
    sentences: list[dict[str, Any]] = []
    speech_ms = 0
    for i, hyp in enumerate(recognized.finals):
        shaped = sentence_output(hyp)["sentence"]
        begin, end = int(shaped["begin_time"]), int(shaped["end_time"])
        speech_ms += max(0, end - begin)
        sentence: dict[str, Any] = {"sentence_id": i + 1, "begin_time": begin, "end_time": end}
        if model.tags:
            sentence["text"] = f"<|Speech|><|NEUTRAL|>{shaped['text']}<|/Speech|>"
        else:
            sentence["text"] = shaped["text"]
            sentence["words"] = shaped["words"]
        if diarize:
            sentence["speaker_id"] = i % speakers
        sentences.append(sentence)
    channels = parameters.get("channel_id") or [0]
    return {
        "file_url": url,
        "properties": {
            "audio_format": recognized.audio_format,
            "channels": list(range(recognized.channels)),
            "original_sampling_rate": recognized.rate,
            "original_duration_in_milliseconds": recognized.duration_ms,
        },
        "transcripts": [
            {
                "channel_id": channels[0],
                "content_duration_in_milliseconds": speech_ms,
                "text": " ".join(s["text"] for s in sentences),
                "sentences": sentences,
            }
        ],
    }


# ------------------------------------------------------------ the task


@dataclass(slots=True, eq=False)
class SimTask:
    """One simulated batch task; the REST service reads it, :func:`run_task` advances it."""

    task_id: str
    model: BatchModel
    file_urls: list[str]
    parameters: dict[str, Any]
    submitted: float
    status: str = "PENDING"
    scheduled: float | None = None
    ended: float | None = None
    subtasks: list[dict[str, Any]] = field(default_factory=list)
    files: dict[int, bytes] = field(default_factory=dict)
    code: str | None = None
    message: str | None = None
    billed_s: int = 0
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


async def run_task(
    task: SimTask, recognizer: Recognizer, limiter: trio.CapacityLimiter, config: RestConfig
) -> None:
    """PENDING → RUNNING → SUCCEEDED/FAILED; never raises (a crash fails the task).

    Cancellation:
        ``task.scope`` cancels the job (the REST service sets CANCELED itself).
    """
    with task.scope:
        try:
            await trio.sleep(config.pending_s)
            task.status, task.scheduled = "RUNNING", trio.current_time()
            audio_s = [0.0]
            subtasks: list[dict[str, Any]] = [{} for _ in task.file_urls]
            async with trio.open_nursery() as nursery:
                for i in range(len(task.file_urls)):
                    nursery.start_soon(
                        _file, task, i, subtasks, audio_s, recognizer, limiter, config
                    )
            busy = max(config.min_running_s, audio_s[0] * config.running_s_per_audio_s)
            await trio.sleep_until(task.scheduled + busy)
            _finish(task, subtasks, config)
        except Exception as exc:
            _log.exception("rest.task_crashed", task_id=task.task_id)
            task.status, task.code, task.message = "FAILED", "InternalError", str(exc)
            task.ended = trio.current_time()


async def _file(
    task: SimTask,
    i: int,
    subtasks: list[dict[str, Any]],
    audio_s: list[float],
    recognizer: Recognizer,
    limiter: trio.CapacityLimiter,
    config: RestConfig,
) -> None:
    url = task.file_urls[i]
    hints = task.parameters.get("language_hints") or []
    language = next((h for h in hints if isinstance(h, str) and h != "auto"), None)
    async with limiter:
        try:
            recognized = await recognize_file(
                url,
                recognizer,
                language=language,
                fetch_timeout_s=config.fetch_timeout_s,
                max_bytes=config.max_download_bytes,
                allow_file_urls=config.allow_file_urls,
            )
        except FileFailure as exc:
            _log.info("rest.file_failed", task_id=task.task_id, code=exc.code)
            subtasks[i] = _failed(url, exc.code, exc.message)
            return
        except Exception as exc:  # the recognizer broke: this file fails, the rest go on
            _log.exception("rest.file_crashed", task_id=task.task_id)
            subtasks[i] = _failed(url, "InternalError", str(exc) or type(exc).__name__)
            return
    audio_s[0] += recognized.duration_ms / 1000
    task.billed_s += math.ceil(recognized.duration_ms / 1000)
    task.files[i] = msgspec.json.encode(result_file(url, recognized, task.model, task.parameters))
    subtasks[i] = {"file_url": url, "subtask_status": "SUCCEEDED"}


def _finish(task: SimTask, subtasks: list[dict[str, Any]], config: RestConfig) -> None:
    task.subtasks = subtasks
    failed = [s for s in subtasks if s["subtask_status"] == "FAILED"]
    task.ended = trio.current_time()
    if config.fail_tasks is not None:
        task.status, task.code = "FAILED", config.fail_tasks
        task.message = "the task failed (simulated)"
    elif len(failed) == len(subtasks):
        task.status, task.code, task.message = "FAILED", failed[0]["code"], failed[0]["message"]
    else:
        task.status = "SUCCEEDED"


def _failed(url: str, code: str, message: str) -> dict[str, Any]:
    return {"file_url": url, "code": code, "message": message, "subtask_status": "FAILED"}


def check_parameters(model: BatchModel, parameters: dict[str, Any]) -> str | None:
    """A 400 message for parameters the model does not take, or None."""
    hints = parameters.get("language_hints")
    if hints is not None:
        if not (isinstance(hints, list) and all(isinstance(h, str) for h in hints)):
            return "parameters.language_hints must be a list of language codes."
        if model.languages is not None:
            bad = [h for h in hints if h not in model.languages]
            if bad:
                return f"Unsupported language_hints {bad[0]!r} for {model.name}."
    channels = parameters.get("channel_id")
    if channels is not None and not (
        isinstance(channels, list)
        and channels
        and all(isinstance(c, int) and c >= 0 for c in channels)
    ):
        return "parameters.channel_id must be a list of track indexes."
    speakers = parameters.get("speaker_count")
    if speakers is not None and not (isinstance(speakers, int) and 2 <= speakers <= 100):
        return "parameters.speaker_count must be 2–100."
    return None
