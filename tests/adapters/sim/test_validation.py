"""run-task validation, without any I/O."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.dashscope.messages import RunTaskRequested
from adapters.sim.validation import Rejection, TaskSpec, check_run_task


def request(model: str = "fun-asr-realtime", **parameters: Any) -> RunTaskRequested:
    return RunTaskRequested(
        task_id="t",
        model=model,
        parameters={"format": "pcm", "sample_rate": 16000, **parameters},
        input={},
        task_group="audio",
        task="asr",
        function="recognition",
        streaming="duplex",
    )


class TestCheckRunTask:
    def test_accepted(self) -> None:
        spec = check_run_task(request(language_hints=["en", "zh"], heartbeat=True, format="WAV"))
        assert spec == TaskSpec(
            task_id="t",
            model="fun-asr-realtime",
            audio_format="wav",
            sample_rate=16000,
            language="en",
            heartbeat=True,
        )

    def test_nulls_count_as_absent(self) -> None:
        spec = check_run_task(request(heartbeat=None, language_hints=None, vocabulary_id=None))
        assert isinstance(spec, TaskSpec)
        assert (spec.heartbeat, spec.language) == (False, None)

    @pytest.mark.parametrize(
        ("model", "rate", "ok"),
        [
            ("paraformer-realtime-v2", 8000, True),
            ("paraformer-realtime-v2", 48000, True),
            ("paraformer-realtime-v2", 7999, False),
            ("paraformer-realtime-8k-v2", 8000, True),
            ("paraformer-realtime-8k-v2", 16000, False),
            ("fun-asr-realtime", 16000, True),
            ("fun-asr-realtime", 48000, False),
        ],
    )
    def test_sample_rates(self, model: str, rate: int, ok: bool) -> None:
        result = check_run_task(request(model, sample_rate=rate))
        assert isinstance(result, TaskSpec) is ok
        if not ok:
            assert isinstance(result, Rejection)
            assert result.code == "InvalidParameter"
            assert model in result.message

    def test_unknown_model_message(self) -> None:
        assert check_run_task(request("paraformer-v9")) == Rejection(
            "Model.NotExist", "Model not exist: 'paraformer-v9'"
        )

    def test_missing_route(self) -> None:
        bare = RunTaskRequested("t", "fun-asr-realtime", {}, {}, None, None, None, "duplex")
        rejection = check_run_task(bare)
        assert isinstance(rejection, Rejection)
        assert rejection.code == "InvalidParameter"
