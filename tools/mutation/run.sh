#!/usr/bin/env bash
# `make mutate`: mutation testing of the pure core, never in CI's default path.
#
#   tools/mutation/run.sh [timeline|policy|state|realtime_state ...]   (default: all four)
#
# engine/timeline.py and engine/policy.py: cosmic-ray. Each gets its own scratch copy
# of the tracked files (cosmic-ray rewrites the module on disk for every mutant; the
# work tree is never touched) and runs only its own test file against each mutant
# (tools/mutation/<module>.toml). The state tables (adapters/dashscope/_state.py,
# _realtime_state.py) are data that no expression operator changes: tables.py deletes
# and retargets their entries. Everything runs under `nice`. Reports land in
# out/mutation/<module>.txt; the surviving mutants are listed, each killed by a test
# or explained, in tools/mutation/SURVIVORS.md. (Not mutmut: mutmut 3 mutates only
# function bodies.)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${VENV_BIN:-$root/.venv/bin}
export PATH="$bin:$PATH" # `python` in the test commands is the project's venv
out="$root/out/mutation"
mkdir -p "$out"
modules=("$@")
[ ${#modules[@]} -eq 0 ] && modules=(timeline policy state realtime_state)
for module in "${modules[@]}"; do
  if [ "$module" = state ] || [ "$module" = realtime_state ]; then
    (cd "$root" && nice -n 19 python tools/mutation/tables.py "$module" --out "$out")
    continue
  fi
  config="tools/mutation/$module.toml"
  [ -f "$root/$config" ] || { echo "mutate: no $config" >&2; exit 2; }
  work=$(mktemp -d "${TMPDIR:-/tmp}/steno-mutate-$module.XXXXXX")
  (cd "$root" && git ls-files -z | xargs -0 cp --parents -t "$work" && cp --parents "$config" "$work")
  (
    cd "$work"
    db="$out/$module.sqlite"
    rm -f "$db"
    nice -n 19 cosmic-ray init "$config" "$db"
    cr-filter-operators "$db" "$config"
    nice -n 19 cosmic-ray --verbosity ERROR baseline "$config"
    nice -n 19 cosmic-ray exec "$config" "$db"
    cr-report --show-output "$db" >"$out/$module.txt" || true
    cr-report "$db" | tail -3
  )
  rm -rf "$work"
done
