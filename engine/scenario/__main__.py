"""``python -m engine.scenario run|check|simulate|merge …``: the verb on its own."""

from __future__ import annotations

from engine.scenario.cli import main

if __name__ == "__main__":  # importing the module (a tool walking the package) runs nothing
    raise SystemExit(main())
