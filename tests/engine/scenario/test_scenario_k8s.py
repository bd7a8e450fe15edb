"""The Kubernetes manifests: an Indexed Job whose pods run segment JOB_COMPLETION_INDEX/N with
flags the CLI accepts, a scenario that decodes, and a merge of every segment."""

from __future__ import annotations

import argparse
import pathlib
import re
import shlex

import yaml

from engine.scenario.cli import add_parser
from engine.scenario.spec import decode_scenario

K8S = pathlib.Path(__file__).resolve().parents[3] / "deploy" / "k8s"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="steno", exit_on_error=False)
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_indexed_job_runs_one_segment_per_pod() -> None:
    docs = list(yaml.safe_load_all((K8S / "scenario-job.yaml").read_text()))
    config, job, claim = docs
    decode_scenario(config["data"]["scenario.toml"])  # the shipped scenario is valid
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    n = spec["completions"]
    assert spec["parallelism"] == n and spec["backoffLimit"] == 0
    (container,) = spec["template"]["spec"]["containers"]
    script = container["args"][0]
    command = script.split(";")[0].replace("${JOB_COMPLETION_INDEX}", "2")
    argv = shlex.split(command)
    assert argv[:3] == ["steno", "scenario", "run"]
    args = parse(argv[1:])
    assert args.segment == f"2/{n}" and args.out == "/results/segment-2" and args.yes
    assert re.search(r'\[ "\$code" -eq 99 \] && exit 0', script)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_merge_job_merges_every_segment() -> None:
    (job,) = yaml.safe_load_all((K8S / "merge-job.yaml").read_text())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    argv = shlex.split(container["args"][0])
    args = parse(argv[1:])
    assert args.scenario_command == "merge" and args.dirs == ["/results/segment-*"]
    assert args.out == "/results/merged"
