"""Mutation testing of the protocol state tables, which are data (run by ``make mutate``).

cosmic-ray's operators rewrite expressions; a transition table is a dict literal of
enum members, so they never change what it says (its only mutants are syntax
errors of the ``**{…}`` unpackings). This tool makes the mutants that matter for a
table: every entry deleted (a legal step becomes a protocol error), and every entry
sent to the next state in the enum (a legal step lands in the wrong state). Each
mutant is applied to the dict object the cores read, and the table's own test files
run in this process (``pytest.main``, ``-x``); the mutant is killed when one fails.

Note: the sweeps use the table as their oracle, so they cannot kill a table mutant
on their own (the core and the oracle change together); the structural checks
(TestTables) and the peer-pair tests, with expectations of their own, do.

    python tools/mutation/tables.py [state|realtime_state ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import pathlib
import sys
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

TABLES: dict[str, tuple[str, list[str]]] = {
    "state": (
        "adapters.dashscope._state",
        [
            "tests/adapters/dashscope/test_inference_state.py",
            "tests/adapters/dashscope/test_inference_pair.py",
        ],
    ),
    "realtime_state": (
        "adapters.dashscope._realtime_state",
        [
            "tests/adapters/dashscope/test_realtime_state.py",
            "tests/adapters/dashscope/test_realtime_pair.py",
        ],
    ),
}
ROLES = ("CLIENT_TRANSITIONS", "SERVER_TRANSITIONS")


class Mutant(NamedTuple):
    table: str
    key: tuple[Any, type[object]]
    new: Any  # None: the entry is deleted

    def describe(self) -> str:
        state, kind = self.key
        change = "deleted" if self.new is None else f"-> {self.new.name}"
        return f"{self.table}[({state.name}, {kind.__name__})] {change}"


def mutants(module: Any) -> Iterator[Mutant]:
    for name in ROLES:
        table: dict[tuple[Any, type[object]], Any] = getattr(module, name)
        for key, target in list(table.items()):
            yield Mutant(name, key, None)
            members = list(type(target))
            yield Mutant(name, key, members[(members.index(target) + 1) % len(members)])


@contextlib.contextmanager
def applied(module: Any, mutant: Mutant) -> Iterator[None]:
    table = getattr(module, mutant.table)
    saved = dict(table)
    if mutant.new is None:
        del table[mutant.key]
    else:
        table[mutant.key] = mutant.new
    try:
        yield
    finally:
        table.clear()
        table.update(saved)  # in the original order


def killed(tests: list[str]) -> bool:
    args = ["-x", "-q", "-p", "no:cacheprovider", "--no-header", *tests]
    with contextlib.redirect_stdout(io.StringIO()):
        code = pytest.main(args)
    return code != pytest.ExitCode.OK


def run(name: str, out: pathlib.Path) -> tuple[int, int]:
    module_name, tests = TABLES[name]
    module = importlib.import_module(module_name)
    assert isinstance(module.CLIENT_TRANSITIONS, dict)
    assert not killed(tests), f"{name}: the tests fail on the unmutated table"
    survivors: list[str] = []
    total = 0
    for mutant in mutants(module):
        total += 1
        with applied(module, mutant):
            if not killed(tests):
                survivors.append(mutant.describe())
        if total % 25 == 0:
            print(f"{name}: {total} mutants run, {len(survivors)} survived so far", flush=True)
    lines = [f"{name}: {total} mutants, {total - len(survivors)} killed, {len(survivors)} survived"]
    lines += [f"SURVIVED {s}" for s in survivors]
    (out / f"{name}.txt").write_text("\n".join(lines) + "\n")
    print(lines[0], flush=True)
    return total, len(survivors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="*", help=f"any of {', '.join(TABLES)} (default: all)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "out" / "mutation")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    unknown = sorted(set(args.tables) - set(TABLES))
    if unknown:
        parser.error(f"unknown tables {unknown}; choose from {sorted(TABLES)}")
    for name in args.tables or TABLES:
        run(name, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
