"""HTTP/1.1 on trio and h11: the one server loop the simulator and the daemon share."""

from __future__ import annotations
