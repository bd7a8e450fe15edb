"""The batch REST transport: httpx on trio, with deadlines, retries and our error families.

:class:`BatchClient` sends the requests :mod:`adapters.dashscope.batch` builds,
adds ``Authorization: Bearer`` at the last moment (and never to result-file
hosts: a ``transcription_url`` is a signed URL on another host), and maps every
httpx, h11 and trio failure to ``engine.errors`` at this edge (house rule R10):

========================================  =========================================
refused, unresolvable, unreachable        :class:`~engine.errors.ConnectFailed`
no answer within the deadline             :class:`~engine.errors.StenoTimeout`
connection broke mid-exchange             :class:`~engine.errors.Disconnected`
HTTP 401/403                              :class:`~engine.errors.AuthError`
HTTP 429 / 5xx                            :class:`~.batch_tasks.BatchServiceError`
other 4xx (bad model, parameter, header)  :class:`~engine.errors.ConfigError`
========================================  =========================================

Every network wait has a deadline on trio's clock: one per request
(``request_timeout_s``), one per download, one for :meth:`BatchClient.wait`.
Polling follows the SDK's schedule (1 s → 5 s, :func:`~.batch_tasks.poll_delays`), so
it runs in virtual time under ``MockClock`` with an in-memory transport
(``httpx.MockTransport``, or :func:`stream_transport` to the simulator over
memory streams).
"""

from __future__ import annotations

import contextlib
import urllib.parse
from typing import TYPE_CHECKING, Final

import httpx
import msgspec
import structlog
import trio

from engine.config import USER_AGENT, Secret
from engine.errors import (
    AuthError,
    ConfigError,
    ConnectFailed,
    Disconnected,
    StenoError,
    StenoTimeout,
)

from ._httpedge import StreamOpener, deadline, mapped_errors, stream_transport
from .batch import (
    HTTP_ENDPOINTS,
    BatchOptions,
    Request,
    cancel_request,
    list_request,
    status_request,
    submit_request,
)
from .batch_result import ResultFile, parse_result_file
from .batch_tasks import (
    BatchServiceError,
    TaskInfo,
    TaskPage,
    parse_task,
    parse_task_page,
    poll_delays,
    response_error,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

__all__ = [
    "HTTP_ENDPOINTS",
    "BatchClient",
    "BatchConfig",
    "FileOutcome",
    "StreamOpener",
    "open_batch_client",
    "stream_transport",
]

_log = structlog.get_logger()

_TRANSIENT: Final = (BatchServiceError, ConnectFailed, StenoTimeout, Disconnected)


class BatchConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where and how patiently the batch client talks.

    Attributes:
        base_url: the HTTP API base, ending in ``/api/v1``.
        connect_timeout_s: TCP (and TLS) connect deadline.
        request_timeout_s: deadline of one whole request and its response.
        wait_timeout_s: deadline of :meth:`BatchClient.wait` (submit to a final status).
        poll_initial_s, poll_max_s, poll_increment_steps: the polling schedule.
        retries: retries of one request after a transient failure (429, 5xx,
            network); a submit is retried only when it surely was not taken
            (refused connection, 429, 503).
        retry_delay_s: the first retry's delay; it doubles, capped at ``poll_max_s``.
        download_timeout_s: deadline of one result-file download.
        max_result_bytes: a larger result file fails that file.
        downloads: result files downloaded at once.
        trust_env: honour proxy environment variables (like the SDK).
    """

    base_url: str = HTTP_ENDPOINTS["cn"]
    connect_timeout_s: float = 10.0
    request_timeout_s: float = 60.0
    wait_timeout_s: float = 6 * 3600.0
    poll_initial_s: float = 1.0
    poll_max_s: float = 5.0
    poll_increment_steps: int = 3
    retries: int = 3
    retry_delay_s: float = 2.0
    download_timeout_s: float = 120.0
    max_result_bytes: int = 64 << 20
    downloads: int = 4
    trust_env: bool = True

    def __post_init__(self) -> None:
        scheme = urllib.parse.urlsplit(self.base_url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"base_url must be http(s)://…/api/v1, not {self.base_url!r}")
        for name in ("connect_timeout_s", "request_timeout_s", "wait_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.retries < 0 or self.downloads < 1:
            raise ValueError("retries must be ≥ 0 and downloads ≥ 1")


class FileOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What became of one submitted file: a parsed result, or why there is none."""

    index: int
    file_url: str
    ok: bool
    code: str | None = None
    message: str | None = None
    transcription_url: str | None = None
    raw: bytes | None = None
    """The result file exactly as downloaded."""
    result: ResultFile | None = None


class BatchClient:
    """Submit, poll, cancel and list batch tasks, and download their results.

    Made by :func:`open_batch_client` (or around any ``httpx.AsyncClient``).
    Safe for concurrent use by several tasks.
    """

    def __init__(self, http: httpx.AsyncClient, config: BatchConfig, api_key: Secret) -> None:
        self._http = http
        self.config = config
        self._key = api_key

    # ------------------------------------------------------------ the API

    async def submit(
        self, model: str, file_urls: list[str], options: BatchOptions | None = None
    ) -> TaskInfo:
        """Submit files (URLs); returns the new task (normally PENDING).

        Raises:
            ConfigError: a bad model, URL or option (before anything is sent), or
                the service rejected the request.
            AuthError, ConnectFailed, StenoTimeout, Disconnected, BatchServiceError.
        """
        request = submit_request(model, file_urls, options or BatchOptions())
        status, body = await self._request(request, idempotent=False)
        info = parse_task(status, body, what="submit")
        _log.info("batch.submitted", task_id=info.task_id, model=model, files=len(file_urls))
        return info

    async def status(self, task_id: str) -> TaskInfo:
        """The task's current status (with ``results`` once it is done)."""
        request = status_request(task_id)
        status, body = await self._request(request, idempotent=True)
        return parse_task(status, body, what=request.what)

    async def cancel(self, task_id: str) -> None:
        """Cancel a task (the service only cancels PENDING ones: others get a ConfigError)."""
        request = cancel_request(task_id)
        status, body = await self._request(request, idempotent=True)
        if not 200 <= status < 300:
            raise response_error(status, body, what=request.what)

    async def list_tasks(
        self,
        *,
        page_no: int = 1,
        page_size: int = 10,
        status: str | None = None,
        model: str | None = None,
    ) -> TaskPage:
        """One page of the account's tasks, newest first."""
        request = list_request(page_no=page_no, page_size=page_size, status=status, model=model)
        code, body = await self._request(request, idempotent=True)
        return parse_task_page(code, body)

    async def wait(
        self, task_id: str, *, on_status: Callable[[TaskInfo], object] | None = None
    ) -> TaskInfo:
        """Poll until the task is SUCCEEDED, FAILED, CANCELED or UNKNOWN.

        Polls at once, then after 1, 1, 2, 2, 2, 4, … 5 s (the SDK's schedule).
        Transient failures of a poll (429, 5xx, network) do not end the wait;
        the next poll tries again.

        Raises:
            StenoTimeout: no final status within ``wait_timeout_s`` (the message
                says how to look again later, and the last transient error).
            AuthError, ConfigError: a permanent failure of a poll.
        """
        config = self.config
        delays = poll_delays(config.poll_initial_s, config.poll_max_s, config.poll_increment_steps)
        last_error: StenoError | None = None
        with trio.move_on_after(config.wait_timeout_s):
            while True:
                try:
                    info = await self.status(task_id)
                except StenoError as exc:
                    if not _transient(exc):
                        raise
                    last_error = exc
                    _log.info("batch.poll_failed", task_id=task_id, error=str(exc))
                else:
                    last_error = None
                    if on_status is not None:
                        on_status(info)
                    if info.terminal:
                        return info
                await trio.sleep(next(delays))
        because = f" (last error: {last_error})" if last_error is not None else ""
        raise StenoTimeout(
            f"task {task_id} did not finish within {config.wait_timeout_s:g} s{because}; "
            f"fix: look later with `steno batch status {task_id}`, or raise --timeout"
        )

    async def download(self, info: TaskInfo) -> list[FileOutcome]:
        """Every file's outcome: each ``transcription_url`` downloaded and parsed, in order.

        A file whose subtask failed, or whose result cannot be downloaded or
        parsed, is reported as such (``ok=False``); the others still complete.
        """
        outcomes: list[FileOutcome | None] = [None] * len(info.results)
        limiter = trio.CapacityLimiter(self.config.downloads)

        async def one(index: int) -> None:
            async with limiter:
                outcomes[index] = await self._outcome(index, info)

        async with trio.open_nursery() as nursery:
            for index in range(len(info.results)):
                nursery.start_soon(one, index)
        return [o for o in outcomes if o is not None]

    async def transcribe(
        self,
        model: str,
        file_urls: list[str],
        options: BatchOptions | None = None,
        *,
        on_status: Callable[[TaskInfo], object] | None = None,
    ) -> tuple[TaskInfo, list[FileOutcome]]:
        """Submit, wait, download: the whole batch round trip."""
        info = await self.submit(model, file_urls, options)
        if on_status is not None:
            on_status(info)
        done = await self.wait(info.task_id, on_status=on_status)
        return done, await self.download(done)

    # ------------------------------------------------------------ internals

    async def _outcome(self, index: int, info: TaskInfo) -> FileOutcome:
        sub = info.results[index]
        base = {
            "index": index,
            "file_url": sub.file_url,
            "transcription_url": sub.transcription_url,
        }
        if sub.subtask_status != "SUCCEEDED" or not sub.transcription_url:
            code = sub.code or sub.subtask_status
            message = sub.message or "the service did not transcribe this file"
            return FileOutcome(ok=False, code=code, message=message, **base)  # type: ignore[arg-type]
        try:
            raw = await self._download(sub.transcription_url)
            result = parse_result_file(raw)
        except StenoError as exc:
            return FileOutcome(ok=False, code="DownloadFailed", message=str(exc), **base)  # type: ignore[arg-type]
        return FileOutcome(ok=True, raw=raw, result=result, **base)  # type: ignore[arg-type]

    async def _download(self, url: str) -> bytes:
        """GET a result file (no credentials: it is a signed URL), size-capped, retried."""
        config = self.config
        what = f"download {_short(url)}"
        for attempt in range(config.retries + 1):
            try:
                with deadline(config.download_timeout_s, what), mapped_errors(what, url):
                    async with self._http.stream(
                        "GET",
                        url,
                        headers={"Accept": "application/json", "User-Agent": USER_AGENT},
                        follow_redirects=True,
                    ) as response:
                        body = bytearray()
                        async for chunk in response.aiter_bytes():
                            body += chunk
                            if len(body) > config.max_result_bytes:
                                raise ConfigError(
                                    f"{what}: the result is over {config.max_result_bytes} bytes; "
                                    "fix: raise max_result_bytes"
                                )
                if response.status_code == 200:
                    return bytes(body)
                raise response_error(response.status_code, bytes(body), what=what)
            except StenoError as exc:
                if not _transient(exc) or attempt >= config.retries:
                    raise
            await trio.sleep(self._retry_delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request(self, request: Request, *, idempotent: bool) -> tuple[int, bytes]:
        """Send ``request``, retrying transient failures; returns the final status and body."""
        config = self.config
        for attempt in range(config.retries + 1):
            try:
                status, body = await self._send(request)
            except (ConnectFailed, StenoTimeout, Disconnected) as exc:
                # A submit that may have reached the service is not sent twice.
                retry = idempotent or (type(exc) is ConnectFailed and _not_sent(exc))
                if not retry or attempt >= config.retries:
                    raise
                _log.info("batch.retry", what=request.what, error=str(exc))
            else:
                retry = status in (429, 503) or (idempotent and status in (500, 502, 504))
                if not retry or attempt >= config.retries:
                    return status, body
                _log.info("batch.retry", what=request.what, status=status)
            await trio.sleep(self._retry_delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_delay(self, attempt: int) -> float:
        return float(min(self.config.retry_delay_s * 2**attempt, self.config.poll_max_s))

    async def _send(self, request: Request) -> tuple[int, bytes]:
        url = self.config.base_url.rstrip("/") + request.path
        headers = dict(request.headers)
        headers["Authorization"] = f"Bearer {self._key.reveal()}"
        with (
            deadline(self.config.request_timeout_s, request.what),
            mapped_errors(request.what, url),
        ):
            response = await self._http.request(
                request.method,
                url,
                headers=headers,
                content=request.body,
                params=request.params or None,
            )
            return response.status_code, response.content


def _short(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"  # no query: signatures stay out of logs


def _transient(exc: StenoError) -> bool:
    """Worth another try: throttling, 5xx, network trouble, timeouts — never a rejected key."""
    return isinstance(exc, _TRANSIENT) and not isinstance(exc, AuthError)


def _not_sent(exc: BaseException) -> bool:
    return isinstance(exc.__cause__, httpx.ConnectError | httpx.ConnectTimeout)


@contextlib.asynccontextmanager
async def open_batch_client(
    config: BatchConfig, api_key: Secret, *, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[BatchClient]:
    """A :class:`BatchClient` for the body of an ``async with``.

    Args:
        config: where to send and the deadlines.
        api_key: sent as ``Authorization: Bearer`` to ``config.base_url`` only.
        transport: an httpx transport to use instead of TCP (tests:
            ``httpx.MockTransport`` or :func:`stream_transport`).

    Resource handling:
        Pooled connections are closed on exit.
    """
    timeout = httpx.Timeout(config.request_timeout_s, connect=config.connect_timeout_s)
    async with httpx.AsyncClient(
        transport=transport, timeout=timeout, trust_env=config.trust_env
    ) as http:
        yield BatchClient(http, config, api_key)
