"""The HTTP edge of the batch client: exceptions mapped to ours, and HTTP over any trio stream.

:func:`mapped_errors` and :func:`deadline` turn httpx's, trio's and the OS's
failures into ``engine.errors`` families, one line each, naming the fix (house
rule R10). :func:`stream_transport` is an httpx transport that speaks HTTP/1.1
over any ``trio.abc.Stream`` a function opens — the batch counterpart of the
WebSocket ``Dialer`` (``ws.py``): tests point a client at the simulator over
memory streams and run it under ``MockClock``.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator

import h11
import httpx
import trio

from engine.errors import ConfigError, ConnectFailed, Disconnected, StenoTimeout

__all__ = ["StreamOpener", "deadline", "mapped_errors", "stream_transport"]


@contextlib.contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError:
        raise StenoTimeout(
            f"{what}: no answer within {seconds:g} s; fix: check the network, or retry later"
        ) from None


@contextlib.contextmanager
def mapped_errors(what: str, url: str) -> Iterator[None]:
    """httpx's (and the OS's) exceptions → ours, one line each, naming the fix."""
    host = urllib.parse.urlsplit(url).netloc or url
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise ConnectFailed(
            f"{what}: cannot reach {host} ({exc or type(exc).__name__}); "
            "fix: check the network and the URL (is the service or simulator running?)"
        ) from exc
    except httpx.TimeoutException as exc:
        raise StenoTimeout(f"{what}: {host} did not answer in time; fix: retry later") from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise ConfigError(f"{what}: bad URL {url!r} ({exc}); fix: use http(s)://…") from exc
    except httpx.TransportError as exc:
        raise Disconnected(
            f"{what}: the connection to {host} failed ({exc or type(exc).__name__}); fix: retry"
        ) from exc
    except OSError as exc:
        raise ConnectFailed(f"{what}: cannot reach {host} ({exc}); fix: check the network") from exc


StreamOpener = Callable[[], Awaitable[trio.abc.Stream]]


def stream_transport(open_stream: StreamOpener) -> httpx.AsyncBaseTransport:
    """An httpx transport speaking HTTP/1.1 (one request per connection) over any trio stream.

    ``open_stream`` dials a new connection per request, e.g. a simulator's
    ``MemoryNet.open_stream``, so the client and the simulator talk over memory
    streams under ``MockClock``. The URL's host is only used for the Host header.
    """
    return _StreamTransport(open_stream)


class _StreamTransport(httpx.AsyncBaseTransport):
    def __init__(self, open_stream: StreamOpener) -> None:
        self._open = open_stream

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        timeout = request.extensions.get("timeout", {}).get("read")
        try:
            stream = await self._open()
        except (OSError, trio.BrokenResourceError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        try:
            with trio.fail_after(timeout if timeout is not None else float("inf")):
                status, headers, content = await _exchange(stream, request, body)
        except trio.TooSlowError:
            raise httpx.ReadTimeout("no response in time", request=request) from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, EOFError) as exc:
            raise httpx.ReadError(str(exc) or "connection lost", request=request) from exc
        except h11.ProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        finally:
            await trio.aclose_forcefully(stream)
        return httpx.Response(status, headers=headers, content=content, request=request)


async def _exchange(
    stream: trio.abc.Stream, request: httpx.Request, body: bytes
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    conn = h11.Connection(h11.CLIENT)
    headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"connection"]
    headers.append((b"connection", b"close"))
    target = request.url.raw_path
    data = conn.send(h11.Request(method=request.method, target=target, headers=headers)) or b""
    if body:
        data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)
    response: h11.Response | None = None
    chunks: list[bytes] = []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(1 << 16)))
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            assert response is not None
            return response.status_code, list(response.headers), b"".join(chunks)
        elif isinstance(event, h11.ConnectionClosed):
            raise EOFError("the server closed the connection before answering")
