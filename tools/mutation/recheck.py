"""Re-test only the surviving mutants of a finished cosmic-ray session (``make mutate``).

After new tests are written for the survivors, this re-runs just those mutants
(``cosmic-ray apply`` in a scratch copy of the tracked files, then the module's own
test command) and prints which still survive, without another full session.

    python tools/mutation/recheck.py timeline [policy ...]
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "out" / "mutation"


def survivors(db: pathlib.Path) -> list[dict[str, object]]:
    dump = subprocess.run(
        ["cosmic-ray", "dump", str(db)], capture_output=True, text=True, check=True
    ).stdout
    found = []
    for line in dump.splitlines():
        item, result = json.loads(line)
        if result and result.get("test_outcome") == "survived":
            found.append({**item["mutations"][0], "diff": result.get("diff", "")})
    return found


def recheck(module: str) -> tuple[int, list[str]]:
    config = tomllib.loads((ROOT / "tools" / "mutation" / f"{module}.toml").read_text())
    command = config["cosmic-ray"]["test-command"]
    path = config["cosmic-ray"]["module-path"]
    left: list[str] = []
    found = survivors(OUT / f"{module}.sqlite")
    with tempfile.TemporaryDirectory(prefix=f"steno-recheck-{module}-") as work:
        files = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout.split(b"\0")
        for name in filter(None, files):
            target = pathlib.Path(work) / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name.decode(), target)
        original = (pathlib.Path(work) / path).read_text()
        for mutant in found:
            (pathlib.Path(work) / path).write_text(original)
            subprocess.run(
                [
                    "cosmic-ray",
                    "apply",
                    path,
                    str(mutant["operator_name"]),
                    str(mutant["occurrence"]),
                ],
                cwd=work,
                check=True,
                capture_output=True,
            )
            done = subprocess.run(command, shell=True, cwd=work, capture_output=True, timeout=300)
            if done.returncode == 0:
                diff = [
                    line
                    for line in str(mutant["diff"]).splitlines()
                    if line[:1] in "+-" and not line.startswith(("+++", "---"))
                ]
                left.append(
                    f"{mutant['operator_name']} #{mutant['occurrence']}: " + " | ".join(diff)
                )
    return len(found), left


def main() -> int:
    for module in sys.argv[1:] or ["timeline", "policy"]:
        total, left = recheck(module)
        print(
            f"{module}: {total} survivors re-tested, {total - len(left)} now killed, {len(left)} left"
        )
        for line in left:
            print(f"  SURVIVES {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
