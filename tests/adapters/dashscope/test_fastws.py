"""The fast WebSocket transport over real loopback sockets, against a server on our codec.

# real-time: loopback sockets (trio's MockClock would jump while a socket waits).

Each test starts a small TCP server whose connections speak the codec's server
role, scripted per test, and dials it with ``fastws.dial_fast``. The exception
families are the same as trio-websocket's transport (one shared table).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
import trustme

from adapters.dashscope._read_hub import MustAwait, ReadHub, shared_hub
from adapters.dashscope.fastws import FastTransport, dial_fast, fast_dialer, socket_opener
from adapters.dashscope.ws import real_dialer, transport_name
from adapters.websocket import (
    SERVER,
    Close,
    Message,
    Ping,
    ServerHandshake,
    UpgradeRequest,
    WebSocketCore,
)
from adapters.websocket.frames import Opcode, build_frame
from engine.errors import (
    AuthError,
    ConfigError,
    ConnectFailed,
    Disconnected,
    RemoteProtocolError,
)

Handler = Callable[["Peer"], Awaitable[None]]


class Peer:
    """The server end of one connection: the codec's server core over a trio stream."""

    def __init__(self, stream: Any, request: UpgradeRequest) -> None:
        self.stream = stream
        self.request = request
        self.core = WebSocketCore(SERVER)

    async def send(self, data: bytes | str) -> None:
        await self.stream.send_all(self.core.send_message(data))

    async def next_event(self) -> object:
        while (event := self.core.next_event()) is None:
            self.core.receive_data((await self.stream.receive_some(65536)) or None)
        return event

    async def receive(self) -> bytes | str:
        while True:
            event = await self.next_event()
            if isinstance(event, Message):
                return event.data
            if isinstance(event, Ping):
                await self.stream.send_all(self.core.pong(event.payload))
            else:
                raise AssertionError(f"unexpected {event!r}")


@contextlib.asynccontextmanager
async def ws_server(
    handler: Handler, *, status: int = 101, tls: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """Serve ``handler`` on a loopback port for the block; yields the URL (``wss://`` with ``tls``)."""

    async def serve_one(stream: Any) -> None:
        handshake = ServerHandshake()
        request = None
        try:
            while request is None:
                request = handshake.receive_data(await stream.receive_some(65536))
        except RemoteProtocolError:  # not a WebSocket client (a TLS hello, say)
            await stream.aclose()
            return
        if status != 101:
            await stream.send_all(handshake.reject(status, body=b"no"))
            await stream.aclose()
            return
        await stream.send_all(handshake.accept())
        peer = Peer(stream, request)
        peer.core.receive_data(handshake.trailing)
        async with stream:
            await handler(peer)

    async with trio.open_nursery() as nursery:
        if tls is None:
            (listener,) = await nursery.start(
                functools.partial(trio.serve_tcp, serve_one, 0, host="127.0.0.1")
            )
            port = listener.socket.getsockname()[1]
        else:
            (listener,) = await nursery.start(
                functools.partial(trio.serve_ssl_over_tcp, serve_one, 0, tls, host="127.0.0.1")
            )
            port = listener.transport_listener.socket.getsockname()[1]
        scheme = "ws" if tls is None else "wss"
        yield f"{scheme}://localhost:{port}/api-ws/v1/inference?x=1"
        nursery.cancel_scope.cancel()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


HEADERS = [("Authorization", "Bearer sk-test"), ("user-agent", "test")]


async def echo(peer: Peer) -> None:
    with contextlib.suppress(AssertionError, trio.BrokenResourceError):
        while True:
            await peer.send(await peer.receive())


class TestConversation:
    @pytest.mark.timeout(60)
    async def test_round_trip_with_headers(self) -> None:
        """Text and binary messages go both ways; the upgrade carried our headers."""
        seen: list[UpgradeRequest] = []

        async def handler(peer: Peer) -> None:
            seen.append(peer.request)
            await echo(peer)

        with trio.fail_after(20):
            async with ws_server(handler) as url, dial_fast(url, HEADERS, connect_timeout=5) as t:
                await t.send("hello")
                assert await t.receive() == "hello"
                assert t.send_nowait(b"\x00\x01" * 1600)
                assert await t.receive() == b"\x00\x01" * 1600
        assert seen[0].header("authorization") == "Bearer sk-test"
        assert seen[0].target == "/api-ws/v1/inference?x=1"

    @pytest.mark.timeout(60)
    async def test_ping_is_answered_by_the_reader(self) -> None:
        """ping() returns once the receiving task saw the pong."""

        async def handler(peer: Peer) -> None:
            await peer.receive()  # answers the ping, then reads our message
            await peer.send("done")

        with trio.fail_after(20):
            async with ws_server(handler) as url, dial_fast(url, HEADERS, connect_timeout=5) as t:
                async with trio.open_nursery() as nursery:
                    got: list[bytes | str] = []

                    async def read() -> None:
                        got.append(await t.receive())

                    nursery.start_soon(read)
                    await t.ping()
                    await t.send("x")
                assert got == ["done"]

    @pytest.mark.timeout(60)
    async def test_server_ping_is_answered(self) -> None:
        """A ping from the server gets a pong with its payload."""
        pongs: list[object] = []

        async def handler(peer: Peer) -> None:
            await peer.stream.send_all(peer.core.ping(b"hb"))
            pongs.append(await peer.next_event())
            await peer.send("after")

        with trio.fail_after(20):
            async with ws_server(handler) as url, dial_fast(url, HEADERS, connect_timeout=5) as t:
                assert await t.receive() == "after"
        assert [type(p).__name__ for p in pongs] == ["Pong"]

    @pytest.mark.timeout(60)
    async def test_server_close_is_disconnected_with_its_code(self) -> None:
        """The server's close frame: Disconnected with its code; the close is echoed."""
        echoed: list[object] = []

        async def handler(peer: Peer) -> None:
            await peer.stream.send_all(peer.core.close(4001, "bye"))
            echoed.append(await peer.next_event())

        with trio.fail_after(20):
            async with ws_server(handler) as url, dial_fast(url, HEADERS, connect_timeout=5) as t:
                with pytest.raises(Disconnected) as caught:
                    await t.receive()
                assert caught.value.code == 4001
                with pytest.raises(Disconnected):
                    await t.send("late")
                assert not _sent_nowait(t)
        assert echoed == [Close(4001, "")]

    @pytest.mark.timeout(60)
    async def test_a_protocol_violation_is_disconnected_1002_and_answered(self) -> None:
        """A masked frame from the server: Disconnected (1002), and our close says 1002."""
        answered: list[object] = []

        async def handler(peer: Peer) -> None:
            await peer.stream.send_all(build_frame(Opcode.TEXT, b"x", mask=b"abcd"))
            answered.append(await peer.next_event())

        with trio.fail_after(20):
            async with ws_server(handler) as url, dial_fast(url, HEADERS, connect_timeout=5) as t:
                with pytest.raises(Disconnected) as caught:
                    await t.receive()
                assert caught.value.code == 1002
                with pytest.raises(Disconnected):
                    await t.receive()
        assert answered == [Close(1002, "")]

    @pytest.mark.timeout(60)
    async def test_reset_is_disconnected(self) -> None:
        """A dropped connection without a close frame: Disconnected (1006)."""

        async def handler(peer: Peer) -> None:
            peer.stream.socket.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0"
            )

        with trio.fail_after(20):
            async with ws_server(handler) as url, dial_fast(url, HEADERS, connect_timeout=5) as t:
                with pytest.raises(Disconnected):
                    await t.receive()

    @pytest.mark.timeout(60)
    async def test_our_close_handshake(self) -> None:
        """aclose() sends our close and waits for the echo; the server sees the code."""
        events: list[object] = []

        async def handler(peer: Peer) -> None:
            event = await peer.next_event()
            events.append(event)
            await peer.stream.send_all(peer.core.close(1000))
            events.append(await peer.stream.receive_some(100))  # EOF: the client closed

        with trio.fail_after(20):
            async with ws_server(handler) as url, dial_fast(url, HEADERS, connect_timeout=5) as t:
                await t.aclose(1001)
        assert events == [Close(1001, ""), b""]


def _sent_nowait(t: object) -> bool:
    assert isinstance(t, FastTransport)
    try:
        return t.send_nowait(b"x")
    except Disconnected:
        return False


class TestFastLane:
    @pytest.mark.timeout(60)
    async def test_a_full_socket_keeps_the_tail_and_order(self) -> None:
        """When the kernel stops taking, send_nowait says False; frames still arrive whole, in order."""
        release = trio.Event()
        received: list[bytes | str] = []

        async def handler(peer: Peer) -> None:
            await release.wait()
            while not received or received[-1] != "end":
                received.append(await peer.receive())
            done.set()

        done = trio.Event()
        frame = bytes(range(256)) * 40  # 10,240 B
        with trio.fail_after(30):
            async with ws_server(handler) as url, dial_fast(url, HEADERS, connect_timeout=5) as t:
                taken = 0
                while t.send_nowait(frame + taken.to_bytes(4, "big")):
                    taken += 1
                    assert taken < 100_000, "the socket never filled"
                # False: nothing was sent; the awaited path flushes the tail, then this frame
                release.set()
                await t.send(frame + taken.to_bytes(4, "big"))
                await t.send("end")
                await done.wait()
        assert [int.from_bytes(m[-4:], "big") for m in received[:-1]] == list(range(taken + 1))
        assert received[-1] == "end"


class TestDialErrors:
    @pytest.mark.timeout(60)
    @pytest.mark.parametrize(
        ("status", "family"),
        [(401, AuthError), (403, AuthError), (503, ConnectFailed), (404, ConnectFailed)],
    )
    async def test_rejected_upgrade(self, status: int, family: type[Exception]) -> None:
        """A refused upgrade maps like trio-websocket's: AuthError for 401/403, else the status."""
        before = open_fds()
        with trio.fail_after(20):
            async with ws_server(echo, status=status) as url:
                with pytest.raises(family) as caught:
                    async with dial_fast(url, HEADERS, connect_timeout=5):
                        pass  # pragma: no cover
        assert isinstance(caught.value, ConnectFailed)
        assert caught.value.status == status
        assert open_fds() <= before

    @pytest.mark.timeout(60)
    async def test_refused(self) -> None:
        """Nobody listening: ConnectFailed naming the URL."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with trio.fail_after(20), pytest.raises(ConnectFailed, match=f"127.0.0.1:{port}"):
            async with dial_fast(f"ws://127.0.0.1:{port}/x", HEADERS, connect_timeout=5):
                pass  # pragma: no cover

    @pytest.mark.timeout(60)
    async def test_silent_server_times_out_and_leaves_no_socket(self) -> None:
        """A server that accepts TCP but never answers: ConnectFailed after the timeout."""
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        before = open_fds()
        try:
            with trio.fail_after(20), pytest.raises(ConnectFailed, match=r"timed out after 0\.3 s"):
                async with dial_fast(f"ws://127.0.0.1:{port}/x", HEADERS, connect_timeout=0.3):
                    pass  # pragma: no cover
        finally:
            listener.close()
        assert open_fds() <= before

    @pytest.mark.timeout(60)
    async def test_tls_to_a_plain_server_fails_cleanly(self) -> None:
        """wss:// to a server that is not TLS: ConnectFailed, no traceback, no socket left."""

        async def handler(peer: Peer) -> None:  # pragma: no cover - never upgraded
            await echo(peer)

        before = open_fds()
        with trio.fail_after(20):
            async with ws_server(handler) as url:
                with pytest.raises(ConnectFailed):
                    async with dial_fast(
                        url.replace("ws://", "wss://"), HEADERS, connect_timeout=5
                    ):
                        pass  # pragma: no cover
        assert open_fds() <= before

    @pytest.mark.timeout(60)
    async def test_socket_closed_on_every_exit(self) -> None:
        """Leaving the block closes the socket: after the server closed, and after our error."""
        before = open_fds()

        async def closer(peer: Peer) -> None:
            await peer.stream.send_all(peer.core.close(1000))

        with trio.fail_after(20):
            async with ws_server(closer) as url:
                async with dial_fast(url, HEADERS, connect_timeout=5) as t:
                    with pytest.raises(Disconnected):
                        await t.receive()
                with pytest.raises(ZeroDivisionError):
                    async with dial_fast(url, HEADERS, connect_timeout=5):
                        raise ZeroDivisionError
                await trio.sleep(0.05)  # real-time: let the server's handlers finish closing
        assert open_fds() <= before


@pytest.fixture(name="ca", scope="module")
def _ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(name="server_tls")
def _server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    return context


class TestTLS:
    @pytest.mark.timeout(60)
    async def test_round_trip_over_verified_tls(
        self, ca: trustme.CA, server_tls: ssl.SSLContext
    ) -> None:
        """wss:// with the server's CA trusted: the certificate checks out, messages flow,
        the fast lane works over TLS too."""
        client_tls = ssl.create_default_context()
        ca.configure_trust(client_tls)
        dial = fast_dialer(socket_opener(client_tls))
        with trio.fail_after(20):
            async with ws_server(echo, tls=server_tls) as url:
                async with dial(url, HEADERS, connect_timeout=5) as t:
                    assert t.send_nowait("over tls")
                    assert await t.receive() == "over tls"
                    await t.send(b"\x01" * 70000)
                    assert await t.receive() == b"\x01" * 70000

    @pytest.mark.timeout(60)
    async def test_an_unknown_ca_is_refused(self, server_tls: ssl.SSLContext) -> None:
        """The default context (system CAs) refuses a certificate it cannot verify."""
        before = open_fds()
        with trio.fail_after(20):
            async with ws_server(echo, tls=server_tls) as url:
                with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
                    async with dial_fast(url, HEADERS, connect_timeout=5):
                        pass  # pragma: no cover
        assert open_fds() <= before

    @pytest.mark.timeout(60)
    async def test_a_certificate_for_another_host_is_refused(self, ca: trustme.CA) -> None:
        """The host name is checked (SNI and the certificate's names)."""
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("elsewhere.example").configure_cert(server_tls)
        client_tls = ssl.create_default_context()
        ca.configure_trust(client_tls)
        dial = fast_dialer(socket_opener(client_tls))
        with trio.fail_after(20):
            async with ws_server(echo, tls=server_tls) as url:
                with pytest.raises(ConnectFailed, match=r"match|mismatch|not valid"):
                    async with dial(url, HEADERS, connect_timeout=5):
                        pass  # pragma: no cover


async def take_by_hub(t: FastTransport, hub: ReadHub) -> tuple[list[bytes | str], str]:
    """What a hub's steps take without awaiting, and why they stopped (await or gone)."""
    got: list[bytes | str] = []
    why: list[str] = []
    done = trio.Event()
    fd = t.hub_fd
    assert fd is not None

    def step() -> None:
        try:
            while True:
                got.append(t.receive_nowait())
        except trio.WouldBlock:
            return
        except MustAwait:
            why.append("await")
        except Disconnected:
            why.append("gone")
        hub.discard(fd)
        done.set()

    hub.add(fd, step)
    try:
        await done.wait()
    finally:
        hub.discard(fd)
    return got, why[0]


class TestReceiveNowait:
    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
    async def test_a_hub_takes_messages_and_hands_back_what_must_await(
        self, tls: bool, ca: trustme.CA, server_tls: ssl.SSLContext
    ) -> None:
        """Messages (one larger than a read) by the hub; a ping, then the close, awaited."""
        big = b"\x02" * 100_000
        events: list[object] = []

        async def handler(peer: Peer) -> None:
            await peer.send("a")
            await peer.send(big)
            await peer.stream.send_all(peer.core.ping(b"hb") + peer.core.send_message("c"))
            events.append(await peer.next_event())  # our pong
            await peer.stream.send_all(peer.core.close(4001, "bye"))
            events.append(await peer.next_event())  # our echo

        client_tls = ssl.create_default_context()
        ca.configure_trust(client_tls)
        dial = fast_dialer(socket_opener(client_tls if tls else None))
        with trio.fail_after(20):
            async with ws_server(handler, tls=server_tls if tls else None) as url:
                async with dial(url, HEADERS, connect_timeout=5) as t:
                    assert isinstance(t, FastTransport)
                    with shared_hub() as hub:
                        got: list[bytes | str] = []
                        while True:
                            taken, why = await take_by_hub(t, hub)
                            got += taken
                            if why == "await":
                                break
                        assert got == ["a", big]
                        assert await t.receive() == "c"  # the kept ping answered first
                        assert await take_by_hub(t, hub) == ([], "await")  # the close
                        with pytest.raises(Disconnected) as caught:
                            await t.receive()
                        assert caught.value.code == 4001
                        with pytest.raises(Disconnected):
                            t.receive_nowait()
        assert [type(e).__name__ for e in events] == ["Pong", "Close"]


class TestChoice:
    def test_env_names_the_transport(self) -> None:
        """STENO_TRANSPORT chooses; unset means the default; a typo is a one-line ConfigError."""
        assert transport_name({}) == "fast"
        assert transport_name({"STENO_TRANSPORT": "trio-websocket"}) == "trio-websocket"
        assert transport_name({"STENO_TRANSPORT": "fast"}) == "fast"
        assert real_dialer("fast") is dial_fast
        with pytest.raises(ConfigError, match="choose one of trio-websocket, fast"):
            transport_name({"STENO_TRANSPORT": "quick"})
