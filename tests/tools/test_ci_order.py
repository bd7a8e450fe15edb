"""The order ``make test`` hands test files to its workers (tools/ci/order.py), and
the per-file durations it reads (tools/ci/timing.py ``durations``)."""

from __future__ import annotations

import json
import pathlib

from tools.ci.order import DURATIONS, load_durations, longest_first
from tools.ci.timing import file_durations, main


class TestLongestFirst:
    def test_files_go_longest_first_and_keep_their_tests_together_in_order(self) -> None:
        """A file's tests stay contiguous and in collection order; files by weight."""
        files = ["a.py", "a.py", "b.py", "c.py", "c.py", "c.py"]
        order = longest_first(files, {"a.py": 1.0, "b.py": 9.0, "c.py": 5.0})
        assert order == [2, 3, 4, 5, 0, 1]

    def test_an_unknown_file_weighs_the_median_of_the_known(self) -> None:
        """New files land in the middle, not last (where one long file idles a worker)."""
        files = ["short.py", "new.py", "mid.py", "long.py"]
        order = longest_first(files, {"short.py": 1.0, "mid.py": 5.0, "long.py": 9.0})
        assert [files[i] for i in order] == ["long.py", "new.py", "mid.py", "short.py"]

    def test_equal_weights_keep_the_collection_order(self) -> None:
        """Without durations nothing moves."""
        files = ["z.py", "a.py", "a.py", "m.py"]
        assert longest_first(files, {}) == [0, 1, 2, 3]


class TestDurations:
    def test_records_sum_per_file(self) -> None:
        """Setup, call and teardown of every test of a file add up, longest file first."""
        records = [
            {"nodeid": "tests/a.py::test_x", "wall_s": 1.25},
            {"nodeid": "tests/b.py::T::test_y[1]", "wall_s": 3.0},
            {"nodeid": "tests/a.py::test_z", "wall_s": 1.0},
        ]
        assert list(file_durations(records).items()) == [("tests/b.py", 3.0), ("tests/a.py", 2.2)]

    def test_the_command_writes_what_the_order_reads(self, tmp_path: pathlib.Path) -> None:
        """``durations OUT IN...`` merges workers' files; load_durations reads it back."""
        for worker, wall in (("gw0", 2.0), ("gw1", 3.0)):
            (tmp_path / f"t.{worker}.json").write_text(
                json.dumps([{"nodeid": f"tests/{worker}.py::t", "wall_s": wall}])
            )
        out = tmp_path / "durations.json"
        assert main(["durations", str(out), *map(str, sorted(tmp_path.glob("t.*.json")))]) == 0
        assert load_durations(out) == {"tests/gw1.py": 3.0, "tests/gw0.py": 2.0}

    def test_a_missing_or_broken_file_is_no_durations(self, tmp_path: pathlib.Path) -> None:
        """Balance is lost, never a run: the order falls back to collection order."""
        assert load_durations(tmp_path / "absent.json") == {}
        (tmp_path / "bad.json").write_text("[1, 2")
        assert load_durations(tmp_path / "bad.json") == {}

    def test_the_recorded_durations_name_test_files_that_exist(self) -> None:
        """The checked-in file is read, and it is about this suite's files."""
        durations = load_durations(DURATIONS)
        assert durations
        root = pathlib.Path(__file__).resolve().parents[2]
        known = [name for name in durations if (root / name).is_file()]
        assert len(known) >= 0.9 * len(durations)
