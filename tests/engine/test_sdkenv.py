"""The dashscope SDK's environment variables and their place in ``resolve_endpoint``."""

from __future__ import annotations

import argparse
import contextlib
import pathlib

import pytest

from adapters.dashscope.batch import HTTP_ENDPOINTS
from adapters.dashscope.models import inference_url
from engine.cli._common import resolve_endpoint
from engine.errors import ConfigError
from engine.sdkenv import env_api_key, env_base_url, env_region

KEY = "sk-0123456789abcdef"


class TestKey:
    def test_variable_wins_over_the_file(self, tmp_path: pathlib.Path) -> None:
        path = tmp_path / "key"
        path.write_text("sk-from-file\n", encoding="utf-8")
        env = {"DASHSCOPE_API_KEY": KEY, "DASHSCOPE_API_KEY_FILE_PATH": str(path)}
        key, origin = env_api_key(env)
        assert (key.reveal(), origin) == (KEY, "DASHSCOPE_API_KEY")

    def test_file_when_the_variable_is_unset_or_empty(self, tmp_path: pathlib.Path) -> None:
        path = tmp_path / "key"
        path.write_text(f"  {KEY}\n", encoding="utf-8")
        for env in (
            {"DASHSCOPE_API_KEY_FILE_PATH": str(path)},
            {"DASHSCOPE_API_KEY": " ", "DASHSCOPE_API_KEY_FILE_PATH": str(path)},
        ):
            key, origin = env_api_key(env)
            assert key.reveal() == KEY
            assert origin == f"DASHSCOPE_API_KEY_FILE_PATH {path}"
            assert KEY not in repr(key) + str(key)

    def test_none(self) -> None:
        key, _ = env_api_key({})
        assert not key

    @pytest.mark.parametrize("case", ["missing", "directory", "empty", "binary"])
    def test_unreadable_file_is_one_line_without_the_content(
        self, tmp_path: pathlib.Path, case: str
    ) -> None:
        path = tmp_path / "key"
        if case == "directory":
            path.mkdir()
        elif case == "empty":
            path.write_text(" \n", encoding="utf-8")
        elif case == "binary":
            path.write_bytes(b"\xff\xfe" + KEY.encode())
        with pytest.raises(ConfigError) as info:
            env_api_key({"DASHSCOPE_API_KEY_FILE_PATH": str(path)})
        message = str(info.value)
        assert "\n" not in message and "; fix: " in message
        assert str(path) in message and KEY not in message


class TestUrlsAndRegion:
    def test_base_urls(self) -> None:
        env = {
            "DASHSCOPE_WEBSOCKET_BASE_URL": "wss://ws.example/api-ws/v1/inference/",
            "DASHSCOPE_HTTP_BASE_URL": "https://http.example/api/v1",
        }
        assert env_base_url("inference", env) == (
            "wss://ws.example/api-ws/v1/inference",
            "DASHSCOPE_WEBSOCKET_BASE_URL",
        )
        assert env_base_url("http", env) == (
            "https://http.example/api/v1",
            "DASHSCOPE_HTTP_BASE_URL",
        )
        assert env_base_url("inference", {}) is None

    @pytest.mark.parametrize(
        ("value", "region"),
        [
            ("cn-beijing", "cn"),
            ("ap-southeast-1", "intl"),
            ("CN", "cn"),
            ("intl", "intl"),
            ("", None),
        ],
    )
    def test_region_names(self, value: str, region: str | None) -> None:
        assert env_region({"DASHSCOPE_API_REGION": value}) == region

    def test_unknown_region_names_the_fix(self) -> None:
        with pytest.raises(ConfigError, match="DASHSCOPE_WEBSOCKET_BASE_URL"):
            env_region({"DASHSCOPE_API_REGION": "us-east-1"})


def _args(url: str | None = None, region: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(url=url, region=region, recognizer="scripted")


class TestPrecedence:
    """Flags win over variables; the SDK's variables over the defaults (README table)."""

    async def test_flag_url_wins_over_the_variable(self) -> None:
        env = {"DASHSCOPE_WEBSOCKET_BASE_URL": "ws://env.example/x", "DASHSCOPE_API_KEY": KEY}
        async with contextlib.AsyncExitStack() as stack:
            endpoint = await resolve_endpoint(
                _args(url="ws://flag.example/x"), stack, api="inference", environ=env
            )
        assert endpoint.url == "ws://flag.example/x"
        assert endpoint.key.reveal() == KEY and not endpoint.embedded

    async def test_variable_url_wins_over_the_region_and_needs_no_key(self) -> None:
        env = {"DASHSCOPE_WEBSOCKET_BASE_URL": "ws://env.example/x", "DASHSCOPE_API_REGION": "intl"}
        async with contextlib.AsyncExitStack() as stack:
            endpoint = await resolve_endpoint(
                _args(region="cn"), stack, api="inference", environ=env, anonymous_key="anon"
            )
        assert (endpoint.url, endpoint.key.reveal(), endpoint.embedded) == (
            "ws://env.example/x",
            "anon",
            False,
        )

    async def test_variable_url_is_checked_by_name(self) -> None:
        env = {"DASHSCOPE_HTTP_BASE_URL": "ws://wrong.example/api/v1"}
        async with contextlib.AsyncExitStack() as stack:
            with pytest.raises(ConfigError, match="bad DASHSCOPE_HTTP_BASE_URL"):
                await resolve_endpoint(_args(), stack, api="http", environ=env)

    @pytest.mark.parametrize(
        ("flag", "variable", "region"),
        [(None, None, "cn"), (None, "ap-southeast-1", "intl"), ("cn", "ap-southeast-1", "cn")],
    )
    async def test_region(self, flag: str | None, variable: str | None, region: str) -> None:
        env = {"DASHSCOPE_API_KEY": KEY} | ({"DASHSCOPE_API_REGION": variable} if variable else {})
        async with contextlib.AsyncExitStack() as stack:
            ws = await resolve_endpoint(_args(region=flag), stack, api="inference", environ=env)
            http = await resolve_endpoint(_args(region=flag), stack, api="http", environ=env)
        assert (ws.url, http.url) == (inference_url(region), HTTP_ENDPOINTS[region])


class TestDaemon:
    """The daemon's own keys first, then the SDK's variables (README table)."""

    def test_key_file_variable_after_its_own_keys(self, tmp_path: pathlib.Path) -> None:
        from engine.cli.daemon import _endpoint, _key_for
        from engine.daemon.config import decode_config

        path = tmp_path / "key"
        path.write_text(KEY, encoding="utf-8")
        config = decode_config("[daemon]\n")
        env = {"DASHSCOPE_API_KEY_FILE_PATH": str(path)}
        key, origin = _key_for(config, env)
        assert (key.reveal(), origin) == (KEY, f"DASHSCOPE_API_KEY_FILE_PATH {path}")
        key, origin = _key_for(config, env | {"DASHSCOPE_API_KEY": "sk-env"})
        assert (key.reveal(), origin) == ("sk-env", "DASHSCOPE_API_KEY")
        assert _endpoint(config, {}) == inference_url("cn")
        url = "wss://ws.example/api-ws/v1/inference"
        assert _endpoint(config, {"DASHSCOPE_WEBSOCKET_BASE_URL": url}) == url
        own = decode_config('[daemon]\nurl = "ws://own.example/x"\n')
        assert _endpoint(own, {"DASHSCOPE_WEBSOCKET_BASE_URL": url}) == "ws://own.example/x"
