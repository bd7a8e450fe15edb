"""The daemon's strict TOML config: refusals with key paths, the key's origin, dumps."""

from __future__ import annotations

import argparse
import pathlib
import re
import typing

import msgspec
import pytest
from daemon_helpers import KEY, config

from adapters.sinks.factory import FORMATS
from engine.cli import main
from engine.cli.daemon import daemon_command
from engine.config import Secret, TranslationOptions
from engine.daemon.config import DaemonConfig, OutputSpec, decode_config, load_config
from engine.daemon.config_sources import UrlSource
from engine.daemon.keys import dump_config, redact_url, resolve_api_key
from engine.errors import ConfigError
from engine.policy import DAEMON

ROOT = pathlib.Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "scenarios" / "daemon-example.toml"

TWO = """
[daemon]
simulator = "scripted"

[[stream]]
id = "a"
source = { kind = "file", path = "a.wav" }

[[stream]]
id = "b"
source = { kind = "url", url = "rtsp://user:hunter2@cam.local/s1?token=abc&ch=1" }
"""


def refusal(toml: str) -> str:
    with pytest.raises(ConfigError) as info:
        decode_config(toml.encode(), origin="d.toml")
    message = str(info.value)
    assert "\n" not in message  # one line
    return message


class TestDecoding:
    def test_the_example_decodes(self) -> None:
        """scenarios/daemon-example.toml is valid, with its defaults filled in."""
        cfg = load_config(EXAMPLE)
        assert cfg.daemon.listen == "127.0.0.1:9464"
        assert [s.id for s in cfg.streams] == ["demo-weather"]
        assert cfg.streams[0].restart.policy() == DAEMON

    @pytest.mark.parametrize(
        ("change", "path", "words"),
        [
            (("kind = \"url\"", "kind = \"tape\""), "$.stream[1].source.kind", "Invalid value"),
            (("ch=1\" }", "ch=1\", speed = 2 }"), "$.stream[1].source", "unknown field `speed`"),
            (("[daemon]", "[daemon]\nlisten-on = 1"), "$.daemon", "unknown field `listen-on`"),
            (("id = \"a\"", "id = \"a b\""), "$.stream[0]", "stream id"),
            (("id = \"b\"", "id = \"a\""), "$.stream[1].id", "already used by stream[0]"),
            (("rtsp://", "file:///"), "$.stream[1].source", "not a network stream"),
            (("[daemon]", "[daemon]\nlisten = \"0.0.0.0:9464\""), "$.daemon", "not loopback"),
            (("[daemon]", "[daemon]\ndrain-deadline-s = \"soon\""), "$.daemon.drain-deadline-s", "Expected `float`"),
        ],
    )  # fmt: skip
    def test_refusals_name_the_key_path(
        self, change: tuple[str, str], path: str, words: str
    ) -> None:
        """A typo or a bad value is refused in one line that names where it is."""
        message = refusal(TWO.replace(*change, 1))
        assert message.startswith("d.toml: ")
        assert words in message
        assert message.endswith(f"- at `{path}`")

    def test_stream_level_refusals(self) -> None:
        """Model, language, formats, idle and stdin rules are checked at load time."""
        base = '[[stream]]\nid = "a"\nsource = { kind = "stdin" }\n'
        assert "unknown model" in refusal(base + 'model = "whisper"')
        assert "does not support language 'xx'" in refusal(base + 'language-hints = ["xx"]')
        assert "$.stream[0].outputs.formats[0]" in refusal(base + 'outputs = { formats = ["doc"] }')
        assert "preroll-ms" in refusal(base + "idle = { after-s = 1, preroll-ms = 1000 }")
        assert "only one stream can read stdin" in refusal(base + base.replace('"a"', '"b"'))

    def test_non_loopback_needs_an_explicit_yes(self) -> None:
        """0.0.0.0 is refused unless allow-non-loopback; [::1] is loopback."""
        ok = config('[daemon]\nlisten = "0.0.0.0:9464"\nallow-non-loopback = true\n')
        assert ok.daemon.address() == ("0.0.0.0", 9464)
        assert config('[daemon]\nlisten = "[::1]:1"\n').daemon.address() == ("::1", 1)
        assert "HOST:PORT" in refusal('[daemon]\nlisten = "localhost"\n')

    def test_formats_match_the_sinks(self) -> None:
        """The formats a config may name are exactly the sinks that exist."""
        hint = typing.get_type_hints(OutputSpec)["formats"]
        assert set(typing.get_args(typing.get_args(hint)[0])) == set(FORMATS)


TRANSLATING = """
[[stream]]
id = "plain"
source = { kind = "stdin" }

[[stream]]
id = "t"
model = "gummy-realtime-v1"
source = { kind = "file", path = "t.wav" }
[stream.translation]
to = ["zh"]
from = "en"
"""
LIVE = 'model = "gummy-realtime-v1"', 'model = "qwen3.5-livetranslate-flash-realtime"'


class TestTranslation:
    def test_the_table_becomes_the_sessions_options(self) -> None:
        """[stream.translation] maps onto TranslationOptions; ``auto`` is no source."""
        t = config(TRANSLATING).stream("t")
        assert t.translation_options() == TranslationOptions(targets=("zh",), source="en")
        live = config(
            TRANSLATING.replace(*LIVE)
            .replace('to = ["zh"]', 'to = ["de"]')
            .replace('from = "en"', 'speech = true\nvoice = "Ethan"\nvad-silence-ms = 400')
            + '[stream.translation.phrases]\n"good morning" = "Guten Morgen"\n'
        ).stream("t")
        assert live.translation_options() == TranslationOptions(
            targets=("de",),
            source=None,
            speech=True,
            voice="Ethan",
            vad_silence_ms=400,
            phrases={"good morning": "Guten Morgen"},
        )
        assert config(TRANSLATING).stream("plain").translation_options() is None

    @pytest.mark.parametrize(
        ("model", "change", "path", "words"),
        [
            ("gummy", ('to = ["zh"]', 'to = ["xx"]'), "$.stream[1].translation.to", "cannot translate 'en' (English) into 'xx'"),
            ("gummy", ('from = "en"', 'from = "xx"'), "$.stream[1].translation.from", "cannot take source language 'xx'"),
            ("gummy", ('from = "en"', "speech = true"), "$.stream[1].translation.speech", "takes no translation speech"),
            ("gummy", ('from = "en"', 'phrases = { a = "b" }'), "$.stream[1].translation.phrases", "takes no translation phrases"),
            ("gummy", ('model = "gummy-realtime-v1"', 'model = "fun-asr-realtime"'), "$.stream[1].model", "does not translate"),
            ("gummy", ('to = ["zh"]', 'to = ["zh"]\nvoice = "Tina"'), "$.stream[1].translation", "voice needs speech = true"),
            ("gummy", ('to = ["zh"]', "to = []"), "$.stream[1].translation.to", "length >= 1"),
            ("gummy", ('to = ["zh"]', 'to = ["../zh"]'), "$.stream[1].translation.to[0]", "Expected `str` matching"),
            ("gummy", ('from = "en"', "vad-silence-ms = 50"), "$.stream[1].translation.vad-silence-ms", ">= 200"),
            ("gummy", ('from = "en"', 'form = "en"'), "$.stream[1].translation", "unknown field `form`"),
            ("live", ('to = ["zh"]', 'to = ["xx"]'), "$.stream[1].translation.to", "cannot translate into 'xx'"),
            ("live", ('to = ["zh"]', 'to = ["zh", "ja"]'), "$.stream[1].translation.to", "one language per stream"),
            ("live", ('to = ["zh"]', 'to = ["kk"]\nspeech = true'), "$.stream[1].translation.speech", "cannot speak 'kk'"),
            ("live", ('id = "t"', 'id = "t"\nlanguage-hints = ["en"]'), "$.stream[1]", "takes no language-hints"),
        ],
    )  # fmt: skip
    def test_refusals_name_the_key_path(
        self, model: str, change: tuple[str, str], path: str, words: str
    ) -> None:
        """A language or option the model cannot take is refused at load, at its key."""
        toml = TRANSLATING.replace(*LIVE) if model == "live" else TRANSLATING
        message = refusal(toml.replace(*change, 1))
        assert words in message
        assert message.endswith(f"- at `{path}`")

    def test_livetranslate_needs_a_target(self) -> None:
        base = '[[stream]]\nid = "a"\nsource = { kind = "stdin" }\n'
        message = refusal(base + f"{LIVE[1]}\n")
        assert "needs a target language" in message and 'translation = { to = ["en"] }' in message
        assert message.endswith("- at `$.stream[0].translation`")

    def test_translate_to_is_refused_with_the_fix(self) -> None:
        """The old placeholder key is not silently dropped: it names its replacement."""
        base = '[[stream]]\nid = "a"\nsource = { kind = "stdin" }\ntranslate-to = ["ja"]\n'
        message = refusal(base)
        assert (
            'translate-to is replaced by the translation table; fix: translation = { to = ["ja"] }'
            in message
        )
        assert message.endswith("- at `$.stream[0]`")

    def test_dump_round_trips_translation(self) -> None:
        """--dump writes the table back (phrases quoted as TOML keys), decodable again."""
        toml = TRANSLATING.replace(*LIVE).replace('from = "en"', "speech = true")
        toml += '[stream.translation.phrases]\n"a \\"b\\" c" = "d"\n'
        cfg = decode_config(toml.encode())
        again = decode_config(dump_config(cfg).encode())
        assert again.stream("t").translation == cfg.stream("t").translation
        assert again.stream("t").translation_options().phrases == {'a "b" c': "d"}  # type: ignore[union-attr]

    def test_the_commented_examples_decode(self) -> None:
        """Uncommenting every example stream of daemon-example.toml gives a valid file."""
        setting = re.compile(r'^# (\[|[\w"-]+\s*=)')
        text = "\n".join(
            line[2:] if setting.match(line) else line for line in EXAMPLE.read_text().splitlines()
        )
        cfg = decode_config(text.encode(), origin=str(EXAMPLE))
        models = {s.id: s.model for s in cfg.streams if s.translation is not None}
        assert models == {
            "keynote-zh": "gummy-realtime-v1",
            "keynote-de": "qwen3.5-livetranslate-flash-realtime",
        }


class TestKeys:
    def test_file_wins_over_the_environment(self, tmp_path: pathlib.Path) -> None:
        """api-key-file is read (stripped); without it, $DASHSCOPE_API_KEY."""
        (tmp_path / "key").write_text(f"  {KEY}\n")
        section = config(f'[daemon]\napi-key-file = "{tmp_path / "key"}"\n').daemon
        key, origin = resolve_api_key(section, {"DASHSCOPE_API_KEY": "sk-env"})
        assert key == Secret(KEY)
        assert origin.startswith("api-key-file")
        key, origin = resolve_api_key(config("").daemon, {"DASHSCOPE_API_KEY": "sk-env"})
        assert (key, origin) == (Secret("sk-env"), "DASHSCOPE_API_KEY")

    def test_an_unreadable_key_file_is_a_config_error(self, tmp_path: pathlib.Path) -> None:
        section = config(f'[daemon]\napi-key-file = "{tmp_path / "missing"}"\n').daemon
        with pytest.raises(ConfigError, match="cannot read api-key-file"):
            resolve_api_key(section, {})

    def test_urls_lose_their_credentials(self) -> None:
        """User info and secret-looking query values become ***; the rest stays."""
        url = "rtsp://user:hunter2@cam.local:554/s1?token=abc&ch=1&api_key=zz"
        assert redact_url(url) == "rtsp://***@cam.local:554/s1?token=***&ch=1&api_key=***"
        assert redact_url("http://host/a.mp3") == "http://host/a.mp3"


class TestDump:
    def test_dump_is_decodable_and_complete(self) -> None:
        """--dump writes every default; decoding it gives the same configuration."""
        cfg = decode_config(TWO.encode())
        text = dump_config(cfg, key_source="DASHSCOPE_API_KEY")
        assert "# api key: *** (from DASHSCOPE_API_KEY)" in text
        assert "drain-deadline-s = 30.0" in text
        again = decode_config(text.encode())
        assert again.streams[0].restart.policy() == cfg.streams[0].restart.policy()

        def plain(c: DaemonConfig) -> object:
            return msgspec.to_builtins(
                msgspec.structs.replace(
                    c,
                    streams=tuple(
                        msgspec.structs.replace(s, restart=type(s.restart)()) for s in c.streams
                    ),
                )
            )

        assert plain(
            msgspec.structs.replace(again, streams=(again.streams[0], cfg.streams[1]))
        ) == plain(cfg)
        assert isinstance(again.streams[1].source, UrlSource)

    def test_dump_hides_credentials(self) -> None:
        text = dump_config(decode_config(TWO.encode()))
        assert "hunter2" not in text and "abc" not in text
        assert "rtsp://***@cam.local/s1?token=***&ch=1" in text


class TestCheckCommand:
    async def test_check_prints_ok_and_the_dump(
        self, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--check --dump: the effective config on stdout, one OK line on stderr, exit 0."""
        path = tmp_path / "d.toml"
        (tmp_path / "a.wav").write_bytes(b"")  # --check refuses a file source that is missing
        path.write_text(
            TWO.replace('simulator = "scripted"', "").replace("a.wav", str(tmp_path / "a.wav"))
        )
        args = argparse.Namespace(config=str(path), check=True, dump=True)
        code = await daemon_command(args, environ={"DASHSCOPE_API_KEY": KEY})
        out, err = capsys.readouterr()
        assert code == 0
        assert "[[stream]]" in out and KEY not in out and KEY not in err
        assert err.startswith(
            f"steno: {path}: OK (2 streams: a, b; key from DASHSCOPE_API_KEY;"
            " workers: 1, every stream in this process)"
        )

    async def test_no_key_and_no_simulator_is_refused(self, tmp_path: pathlib.Path) -> None:
        path = tmp_path / "d.toml"
        path.write_text(TWO.replace('simulator = "scripted"', ""))
        args = argparse.Namespace(config=str(path), check=True, dump=False)
        with pytest.raises(ConfigError, match="no API key"):
            await daemon_command(args, environ={})

    def test_main_exits_2_with_one_line(
        self, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A bad config: exit code 2 and a single 'steno: error:' line naming the path."""
        path = tmp_path / "d.toml"
        path.write_text(TWO.replace('kind = "url"', 'kind = "tape"'))
        assert main(["daemon", str(path), "--check"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert err.startswith("steno: error: ") and "$.stream[1].source.kind" in err
