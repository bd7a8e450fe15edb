"""Scenario-driven load testing: ``steno scenario run | check | merge`` (DESIGN §7).

A scenario file (TOML, k6's vocabulary) names executors that start real streams
through the engine's embedding API against a target (the embedded simulator in its
own process, or a URL); metrics go into HDR histograms, thresholds decide the exit
code, and the outputs are report.json, history.csv and a self-contained report.html.
Execution segments (``--segment I/N``) split a run over processes or machines with no
coordinator; ``merge`` puts them back together exactly.

Modules: ``spec`` (the file), ``schedule`` (executors as pure time functions,
segments), ``executor`` (driving them on the trio clock) with ``lifecycle`` (its
phase table), ``play`` (one stream,
measured), ``metrics`` / ``catalog`` (series), ``thresholds``, ``report`` / ``html``
(outputs), ``runner`` (a run), ``merge`` (segments), ``simproc`` / ``labeler`` (the
embedded target), ``plan`` (``check``), ``cli`` (the verb).
"""

from __future__ import annotations

from engine.scenario.spec import ScenarioFile as ScenarioFile
from engine.scenario.spec import decode_scenario as decode_scenario
from engine.scenario.spec import load_scenario as load_scenario

__all__ = ["ScenarioFile", "decode_scenario", "load_scenario"]
