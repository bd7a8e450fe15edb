"""A sans-IO RFC 6455 (WebSocket) codec for both roles: frames, the connection, the handshake.

No trio and no sockets here: the transports (``adapters/dashscope/fastws.py``
for the client, the simulator for the server) feed it bytes and write what it
returns. Masking uses ``websockets``' C routine when importable (``_mask.py``).
"""

from __future__ import annotations

from ._mask import MASK_IMPLEMENTATION as MASK_IMPLEMENTATION
from ._mask import apply_mask as apply_mask
from ._mask import apply_mask_python as apply_mask_python
from .handshake import Accepted as Accepted
from .handshake import ClientHandshake as ClientHandshake
from .handshake import Rejected as Rejected
from .handshake import ServerHandshake as ServerHandshake
from .handshake import UpgradeRequest as UpgradeRequest
from .protocol import CLIENT as CLIENT
from .protocol import SERVER as SERVER
from .protocol import Close as Close
from .protocol import ConnectionLost as ConnectionLost
from .protocol import Message as Message
from .protocol import Ping as Ping
from .protocol import Pong as Pong
from .protocol import Role as Role
from .protocol import State as State
from .protocol import Violation as Violation
from .protocol import WebSocketCore as WebSocketCore
from .protocol import WebSocketEvent as WebSocketEvent

__all__ = [
    "CLIENT",
    "MASK_IMPLEMENTATION",
    "SERVER",
    "Accepted",
    "ClientHandshake",
    "Close",
    "ConnectionLost",
    "Message",
    "Ping",
    "Pong",
    "Rejected",
    "Role",
    "ServerHandshake",
    "State",
    "UpgradeRequest",
    "Violation",
    "WebSocketCore",
    "WebSocketEvent",
    "apply_mask",
    "apply_mask_python",
]
