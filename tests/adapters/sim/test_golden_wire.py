"""The simulator's wire output for fixed audio is what it was before the fast path (#11).

Every case of ``golden_wire.py`` runs over TCP, so the read hub's in-place path (and the
reader task's, for what it hands back) serves it; each server message must equal the
recorded one byte for byte.
"""

from __future__ import annotations

import json

from conftest import deadline
from golden_wire import GOLDEN, cases, record_all


class TestGoldenWire:
    @deadline(60)
    async def test_every_message_as_recorded(self) -> None:
        """Same audio in, the same messages out, in the same order, for every case."""
        expected = json.loads(GOLDEN.read_text())
        got = await record_all()
        assert list(got) == [case.name for case in cases()] == list(expected)
        for name, messages in expected.items():
            assert got[name] == messages, name
