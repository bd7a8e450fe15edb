"""The daemon config's JSON Schema: a valid 2020-12 schema that accepts the shipped examples
and refuses what ``load_config`` refuses key by key."""

from __future__ import annotations

import io
import json
import pathlib
import re
import tomllib
from typing import Any

import jsonschema
import pytest

from engine.daemon.config import decode_config
from engine.daemon.schema import config_schema, schema_json

ROOT = pathlib.Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "scenarios" / "daemon-example.toml"


def uncommented(text: str) -> str:
    """The example with every commented example setting switched on (as test_daemon_config does)."""
    setting = re.compile(r'^# (\[|[\w"-]+\s*=)')
    return "\n".join(line[2:] if setting.match(line) else line for line in text.splitlines())


def errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(config_schema())
    return [e.message for e in validator.iter_errors(doc)]


class TestSchema:
    def test_it_is_a_valid_schema_and_printable(self) -> None:
        jsonschema.Draft202012Validator.check_schema(config_schema())
        assert json.loads(schema_json()) == config_schema()
        assert b"null" not in schema_json()  # TOML has no null

    @pytest.mark.parametrize("variant", ["as shipped", "every example on"])
    def test_the_shipped_examples_validate(self, variant: str) -> None:
        text = EXAMPLE.read_text()
        if variant != "as shipped":
            text = uncommented(text)
        decode_config(text.encode())  # the loader agrees that it is valid
        assert errors(tomllib.loads(text)) == []

    @pytest.mark.parametrize(
        ("toml", "needle"),
        [
            ('[daemon]\nlisen = "127.0.0.1:1"\n', "lisen"),
            ('[[stream]]\nid = "a"\nsource = { kind = "ftp", path = "x" }\n', "kind"),
            ('[[stream]]\nid = "a"\nmodel = "nope"\nsource = { kind = "stdin" }\n', "nope"),
            ('[[stream]]\nid = "a b"\nsource = { kind = "stdin" }\n', "a b"),
            (
                '[[stream]]\nid = "a"\nsource = { kind = "stdin" }\noutputs = { rotate = "week" }\n',
                "week",
            ),
            ('[daemon]\ndegraded-after-s = "5"\n', "'5'"),
            ("[daemon]\nworkers = 0\n", "0 is not valid"),
            ("[daemon]\nworkers = 257\n", "257 is not valid"),
            ('[daemon]\nworkers = "many"\n', "'many' is not valid"),
        ],
    )
    def test_what_the_loader_refuses_the_schema_refuses(self, toml: str, needle: str) -> None:
        with pytest.raises(Exception, match=r"."):
            decode_config(toml.encode())
        found = errors(tomllib.loads(toml))
        assert found and any(needle in m for m in found), found


class TestCommand:
    async def test_steno_daemon_schema_prints_it_without_a_config(self) -> None:
        """``steno daemon --schema`` (parsed by steno's own parser) prints the schema, exit 0;
        without --schema a missing CONFIG.toml is a configuration error."""
        from engine.cli import build_parser
        from engine.cli.daemon import daemon_command
        from engine.errors import ConfigError

        out = io.StringIO()
        args = build_parser().parse_args(["daemon", "--schema"])
        assert await daemon_command(args, environ={}, out=out) == 0
        assert json.loads(out.getvalue()) == config_schema()
        with pytest.raises(ConfigError, match=r"no CONFIG\.toml"):
            await daemon_command(build_parser().parse_args(["daemon"]), environ={}, out=out)
