"""``python -m engine.scenario run|check|merge …``: the ``steno scenario`` verb on its own."""

from __future__ import annotations

from engine.scenario.cli import main

raise SystemExit(main())
