"""The opening handshake, both roles, wired together and against hostile peers."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.websocket import (
    Accepted,
    ClientHandshake,
    Rejected,
    ServerHandshake,
    UpgradeRequest,
)
from adapters.websocket.handshake import accept_token
from engine.errors import RemoteProtocolError


def test_accept_token_matches_the_rfc_example() -> None:
    """RFC 6455 section 1.3's example key gives its example accept value."""
    assert accept_token(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


class TestPair:
    def test_accept_with_headers_and_early_frames(self) -> None:
        """The server sees our headers; the client accepts; bytes after the head are kept."""
        client = ClientHandshake("example.com:8080", "/api?x=1", [("Authorization", "Bearer k")])
        server = ServerHandshake()
        request = server.receive_data(client.request() + b"\x81\x80abcd")
        assert isinstance(request, UpgradeRequest)
        assert request.target == "/api?x=1"
        assert request.header("authorization") == "Bearer k"
        assert request.header("host") == "example.com:8080"
        assert server.trailing == b"\x81\x80abcd"
        response = server.accept([("X-Trace", "1")])
        accepted = client.receive_data(response + b"\x81\x01x")
        assert isinstance(accepted, Accepted)
        assert accepted.extra == b"\x81\x01x"
        assert ("x-trace", "1") in accepted.headers

    @given(st.integers(min_value=1, max_value=40))
    def test_byte_by_byte(self, step: int) -> None:
        """Either side copes with the other's bytes in pieces of any size."""
        client = ClientHandshake("h", "/")
        server = ServerHandshake()
        request = client.request()
        got = None
        for at in range(0, len(request), step):
            got = server.receive_data(request[at : at + step])
        assert isinstance(got, UpgradeRequest)
        response = server.accept()
        result = None
        for at in range(0, len(response), step):
            assert result is None
            result = client.receive_data(response[at : at + step])
        assert isinstance(result, Accepted)

    @pytest.mark.parametrize("status", [401, 403, 404, 503])
    def test_rejected(self, status: int) -> None:
        """Another status is Rejected with that status."""
        client = ClientHandshake("h", "/")
        server = ServerHandshake()
        server.receive_data(client.request())
        result = client.receive_data(server.reject(status, body=b'{"error": "no"}'))
        assert result == Rejected(status, result.headers if result else ())

    def test_keys_are_fresh(self) -> None:
        """Each handshake has its own 16-byte random key."""
        keys = {ClientHandshake("h", "/").key for _ in range(20)}
        assert len(keys) == 20
        assert all(len(base64.b64decode(k)) == 16 for k in keys)


def response(*lines: str) -> bytes:
    return ("\r\n".join(["HTTP/1.1 101 Switching Protocols", *lines, "", ""])).encode()


class TestHostileServer:
    @pytest.mark.parametrize(
        ("lines", "match"),
        [
            (
                ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: bm9wZQ=="],
                "does not match",
            ),
            (["Connection: Upgrade"], "Upgrade: websocket"),
            (["Upgrade: websocket"], "Connection: Upgrade"),
        ],
    )
    def test_bad_101(self, lines: list[str], match: str) -> None:
        """A 101 that does not accept our key properly is a RemoteProtocolError."""
        client = ClientHandshake("h", "/")
        with pytest.raises(RemoteProtocolError, match=match):
            client.receive_data(response(*lines))

    def test_extension_we_did_not_offer(self) -> None:
        """A server choosing an extension is refused."""
        client = ClientHandshake("h", "/")
        token = accept_token(client.key).decode()
        with pytest.raises(RemoteProtocolError, match="extension"):
            client.receive_data(
                response(
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    f"Sec-WebSocket-Accept: {token}",
                    "Sec-WebSocket-Extensions: permessage-deflate",
                )
            )

    def test_garbage_and_eof(self) -> None:
        """Not HTTP, or EOF mid-head, is a RemoteProtocolError."""
        with pytest.raises(RemoteProtocolError):
            ClientHandshake("h", "/").receive_data(b"SSH-2.0-OpenSSH\r\n\r\n")
        client = ClientHandshake("h", "/")
        client.receive_data(b"HTTP/1.1 101 Swi")
        with pytest.raises(RemoteProtocolError):
            client.receive_data(b"")

    def test_head_over_the_bound(self) -> None:
        """A response head past 16 KiB is refused."""
        client = ClientHandshake("h", "/")
        with pytest.raises(RemoteProtocolError):
            client.receive_data(b"HTTP/1.1 101 OK\r\n" + b"X: " + b"a" * 20000)


class TestHostileClient:
    def request(self, *lines: str, method: str = "GET") -> bytes:
        return "\r\n".join([f"{method} / HTTP/1.1", "Host: h", *lines, "", ""]).encode()

    GOOD = (
        "Upgrade: websocket",
        "Connection: keep-alive, Upgrade",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    )

    def test_good_request_with_token_lists(self) -> None:
        """Connection may list several tokens."""
        assert isinstance(ServerHandshake().receive_data(self.request(*self.GOOD)), UpgradeRequest)

    @pytest.mark.parametrize(
        ("drop", "replace", "status"),
        [
            (0, None, 426),
            (2, "Sec-WebSocket-Version: 8", 426),
            (3, "Sec-WebSocket-Key: c2hvcnQ=", 400),
            (3, None, 400),
        ],
    )
    def test_bad_requests(self, drop: int, replace: str | None, status: int) -> None:
        """Missing or wrong upgrade headers raise with the status to answer."""
        lines = list(self.GOOD)
        if replace is None:
            del lines[drop]
        else:
            lines[drop] = replace
        server = ServerHandshake()
        with pytest.raises(RemoteProtocolError) as caught:
            server.receive_data(self.request(*lines))
        assert caught.value.close_code_hint == status

    def test_post_is_refused(self) -> None:
        """Only GET upgrades."""
        with pytest.raises(RemoteProtocolError) as caught:
            ServerHandshake().receive_data(
                self.request(*self.GOOD, "Content-Length: 0", method="POST")
            )
        assert caught.value.close_code_hint == 405
