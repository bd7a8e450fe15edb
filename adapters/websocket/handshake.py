"""The RFC 6455 opening handshake (section 4) for both roles, sans-IO, over h11.

Client: :class:`ClientHandshake` builds the upgrade request (a fresh random
``Sec-WebSocket-Key``, our extra headers) and reads the response:
:class:`Accepted` (101, ``Sec-WebSocket-Accept`` checked) or :class:`Rejected`
(any other status, with its headers: the caller maps 401/403 and the rest).

Server: :class:`ServerHandshake` reads the request into an
:class:`UpgradeRequest` (method, target, headers, key checked) and answers it
with :meth:`ServerHandshake.accept` or :meth:`ServerHandshake.reject`.

Bytes that arrive after the handshake in the same read (the peer's first
frames) are handed over as ``extra`` / :attr:`ServerHandshake.trailing`: feed
them to the :class:`~adapters.websocket.protocol.WebSocketCore`.

Bounds: a request or response head may be at most :data:`MAX_HEAD_SIZE` bytes
(h11's ``max_incomplete_event_size``); a larger one is a
``RemoteProtocolError``. Errors: every malformed or non-WebSocket peer input
raises :class:`~engine.errors.RemoteProtocolError` (its ``close_code_hint`` is
the HTTP status a server should answer with).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Final

import h11
import msgspec

from engine.errors import RemoteProtocolError

__all__ = [
    "MAX_HEAD_SIZE",
    "Accepted",
    "ClientHandshake",
    "Rejected",
    "ServerHandshake",
    "UpgradeRequest",
    "accept_token",
]

MAX_HEAD_SIZE: Final = 16 * 1024
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

RawHeaders = Sequence[tuple[str, str]]


def accept_token(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


class Accepted(msgspec.Struct, frozen=True):
    """The server switched protocols; ``extra`` is the first bytes of the WebSocket stream."""

    headers: tuple[tuple[str, str], ...]
    extra: bytes = b""


class Rejected(msgspec.Struct, frozen=True):
    """The server answered the upgrade with another status."""

    status: int
    headers: tuple[tuple[str, str], ...]


class UpgradeRequest(msgspec.Struct, frozen=True):
    """A valid WebSocket upgrade request, as the server received it (header names lower-case)."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    key: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)


def _text_headers(headers: Sequence[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers)


def _tokens(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> set[bytes]:
    return {
        token.strip().lower()
        for key, value in headers
        if key == name
        for token in value.split(b",")
    }


def _remote(message: str, status: int = 400) -> RemoteProtocolError:
    return RemoteProtocolError(message, close_code_hint=status)


class ClientHandshake:
    """A client's opening handshake.

    Args:
        host: the ``Host`` header (``host`` or ``host:port``).
        target: the request target (path and query).
        headers: extra request headers (authorization, user agent, ...).
        random_bytes: the key's entropy source (``os.urandom``).
    """

    def __init__(
        self,
        host: str,
        target: str,
        headers: RawHeaders = (),
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._key = base64.b64encode(random_bytes(16))
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_SIZE)
        self._request = self._h11.send(
            h11.Request(
                method="GET",
                target=target,
                headers=[
                    ("Host", host),
                    ("Upgrade", "websocket"),
                    ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Key", self._key.decode()),
                    ("Sec-WebSocket-Version", "13"),
                    *headers,
                ],
            )
        )

    @property
    def key(self) -> bytes:
        return self._key

    def request(self) -> bytes:
        """The request's bytes, to write first."""
        assert self._request is not None
        return self._request

    def receive_data(self, data: bytes) -> Accepted | Rejected | None:
        """Feed response bytes (``b""`` at EOF); None until the response head is complete.

        Raises:
            RemoteProtocolError: a malformed response, an EOF before its end, or a
                101 that does not accept our key.
        """
        self._h11.receive_data(data)
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise _remote(f"a malformed handshake response: {exc}") from None
        if event is h11.NEED_DATA:
            return None
        if isinstance(event, h11.ConnectionClosed):
            raise _remote("the server closed the connection during the handshake")
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            return self._accepted(event)
        if isinstance(event, h11.Response | h11.InformationalResponse):
            return Rejected(event.status_code, _text_headers(event.headers))
        raise _remote(f"an unexpected handshake response: {event!r}")  # pragma: no cover

    def _accepted(self, event: h11.InformationalResponse) -> Accepted:
        headers = event.headers
        if b"websocket" not in _tokens(headers, b"upgrade"):
            raise _remote("a 101 response without Upgrade: websocket")
        if b"upgrade" not in _tokens(headers, b"connection"):
            raise _remote("a 101 response without Connection: Upgrade")
        accept = [value for key, value in headers if key == b"sec-websocket-accept"]
        if accept != [accept_token(self._key)]:
            raise _remote("a 101 response whose Sec-WebSocket-Accept does not match our key")
        extensions = [v for k, v in headers if k in (b"sec-websocket-extensions",)]
        if extensions:
            raise _remote("the server chose an extension we did not offer")
        extra, _closed = self._h11.trailing_data
        return Accepted(_text_headers(headers), bytes(extra))


class ServerHandshake:
    """A server's opening handshake: read the request, then accept or reject it."""

    def __init__(self) -> None:
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
        self._request: UpgradeRequest | None = None

    def receive_data(self, data: bytes) -> UpgradeRequest | None:
        """Feed request bytes (``b""`` at EOF); None until the request head is complete.

        Raises:
            RemoteProtocolError: malformed, not a WebSocket upgrade, or EOF
                before the request ended; ``close_code_hint`` is the status to
                answer with (:meth:`reject` still works, for a parsed request).
        """
        self._h11.receive_data(data)
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise _remote(f"a malformed upgrade request: {exc}", exc.error_status_hint) from None
        if event is h11.NEED_DATA:
            return None
        if isinstance(event, h11.ConnectionClosed):
            raise _remote("the client closed the connection during the handshake")
        assert isinstance(event, h11.Request)
        headers = event.headers
        if event.method != b"GET":
            raise _remote("a WebSocket upgrade must be a GET", 405)
        if b"websocket" not in _tokens(headers, b"upgrade") or b"upgrade" not in _tokens(
            headers, b"connection"
        ):
            raise _remote("not a WebSocket upgrade (Upgrade / Connection headers)", 426)
        if _tokens(headers, b"sec-websocket-version") != {b"13"}:
            raise _remote("only WebSocket version 13 is supported", 426)
        keys = [value for key, value in headers if key == b"sec-websocket-key"]
        if len(keys) != 1 or not _valid_key(keys[0]):
            raise _remote("a missing or malformed Sec-WebSocket-Key")
        self._request = UpgradeRequest(
            event.method.decode(), event.target.decode("latin-1"), _text_headers(headers), keys[0]
        )
        return self._request

    def accept(self, headers: RawHeaders = ()) -> bytes:
        """The 101 response to the request read (switch to the WebSocket protocol)."""
        if self._request is None:
            raise RuntimeError("accept() before a request was read")
        return (
            self._h11.send(
                h11.InformationalResponse(
                    status_code=101,
                    headers=[
                        ("Upgrade", "websocket"),
                        ("Connection", "Upgrade"),
                        ("Sec-WebSocket-Accept", accept_token(self._request.key).decode()),
                        *headers,
                    ],
                )
            )
            or b""
        )

    def reject(self, status: int, headers: RawHeaders = (), body: bytes = b"") -> bytes:
        """A complete refusal with ``status`` (the connection closes after it)."""
        out = [
            self._h11.send(
                h11.Response(
                    status_code=status,
                    headers=[
                        *headers,
                        ("Content-Length", str(len(body))),
                        ("Connection", "close"),
                    ],
                )
            )
        ]
        if body:
            out.append(self._h11.send(h11.Data(data=body)))
        out.append(self._h11.send(h11.EndOfMessage()))
        return b"".join(chunk for chunk in out if chunk)

    @property
    def trailing(self) -> bytes:
        """Bytes the client sent after its request head (its first frames), once accepted."""
        return bytes(self._h11.trailing_data[0])


def _valid_key(key: bytes) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        return False
