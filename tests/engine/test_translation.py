"""Translation options: what each model accepts, and what each protocol is sent."""

from __future__ import annotations

import pytest

from adapters.dashscope.models import endpoint, get_model
from adapters.dashscope.realtime_connection import SegmentTimes
from engine.config import Secret, SessionConfig, TranslationOptions
from engine.errors import ConfigError
from engine.translation import check_translation, gummy_parameters, realtime_settings, transcribes

LIVE = "qwen3.5-livetranslate-flash-realtime"


def opts(**kw: object) -> TranslationOptions:
    kw.setdefault("targets", ("zh",))
    return TranslationOptions(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        ("paraformer-realtime-v2", opts(), "does not translate; fix: use gummy"),
        (LIVE, None, "needs a target language; fix: --to LANG"),
        (LIVE, opts(targets=("zh", "en")), "one language per stream"),
        (LIVE, opts(targets=("xx",)), "cannot translate into 'xx'"),
        (LIVE, opts(targets=("el",), speech=True), "cannot speak 'el'"),
        ("gummy-realtime-v1", opts(speech=True), "text only, no translated speech"),
        ("gummy-chat-v1", opts(phrases={"a": "b"}), "takes no translation phrases"),
        ("gummy-realtime-v1", opts(image="x.jpg"), "takes no images"),
        ("gummy-realtime-v1", opts(targets=("qq",)), "qq"),
        ("gummy-chat-v1", opts(source="qq"), "qq"),
    ],
)
def test_refused_before_connecting(
    model: str, options: TranslationOptions | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        check_translation(get_model(model), options)


@pytest.mark.parametrize(
    ("model", "options"),
    [
        ("paraformer-realtime-v2", None),
        ("gummy-realtime-v1", None),
        ("gummy-realtime-v1", opts(targets=("en", "ja"))),
        ("gummy-chat-v1", opts()),
        (LIVE, opts()),
        (LIVE, opts(targets=("el",))),  # text-only target, text-only session
        (LIVE, opts(speech=True, phrases={"通义千问": "Qwen"})),
    ],
)
def test_accepted(model: str, options: TranslationOptions | None) -> None:
    check_translation(get_model(model), options)


def test_options_validate_themselves() -> None:
    with pytest.raises(ValueError, match="at least one target"):
        TranslationOptions(targets=())
    with pytest.raises(ValueError, match="must not repeat"):
        TranslationOptions(targets=("zh", "zh"))
    with pytest.raises(ValueError, match="200–6000"):
        TranslationOptions(targets=("zh",), vad_silence_ms=100)


def test_gummy_parameters_are_explicit_as_the_sdk_sends_them() -> None:
    assert gummy_parameters(None) == {
        "transcription_enabled": True,
        "translation_enabled": False,
        "source_language": None,
    }
    assert gummy_parameters(opts(targets=("en",), source="zh", vad_silence_ms=800)) == {
        "transcription_enabled": True,
        "translation_enabled": True,
        "translation_target_languages": ["en"],
        "source_language": "zh",
        "max_end_silence": 800,
    }
    assert gummy_parameters(opts(transcription=False))["transcription_enabled"] is False


def test_realtime_settings_state_every_value() -> None:
    config = SessionConfig(
        stream="s",
        model=LIVE,
        url="ws://x/api-ws/v1/inference",
        api_key=Secret("k"),
        translation=opts(
            targets=("en",), source="zh", speech=True, voice="Cherry", phrases={"通义千问": "Qwen"}
        ),
    )
    settings = realtime_settings(config, get_model(LIVE))
    wire = settings.to_wire()
    assert wire.modalities == ["text", "audio"]
    assert wire.voice == "Cherry"
    assert wire.sample_rate == 16000
    assert wire.input_audio_transcription.model == "qwen3-asr-flash-realtime"  # type: ignore[union-attr]
    assert wire.input_audio_transcription.language == "zh"  # type: ignore[union-attr]
    assert wire.translation.language == "en"  # type: ignore[union-attr]
    text_only = realtime_settings(
        msgspec_replace(config, translation=opts(transcription=False)), get_model(LIVE)
    )
    assert text_only.modalities == ("text",)
    assert text_only.input_audio_transcription.model is None


def msgspec_replace(config: SessionConfig, **kw: object) -> SessionConfig:
    import msgspec

    return msgspec.structs.replace(config, **kw)


def test_transcribes() -> None:
    assert transcribes(get_model("paraformer-realtime-v2"), None)
    assert transcribes(get_model("gummy-realtime-v1"), opts())
    assert not transcribes(get_model("gummy-realtime-v1"), opts(transcription=False))


# ------------------------------------------------------------ segment times


def test_named_segments_keep_their_own_times() -> None:
    times = SegmentTimes()
    times.started(420, "item_A")
    times.stopped(2650, "item_A")
    times.started(3000, "item_B")
    assert times.span("item_A", now_ms=5000) == (420, 2650)
    assert times.span("item_B", now_ms=5000) == (3000, 5000)  # still open: ends "now"


def test_unnamed_segments_are_claimed_by_items_in_order() -> None:
    times = SegmentTimes()
    times.started(420, None)  # the documented example names no item
    times.stopped(2650, None)
    times.started(3000, None)
    assert times.span("item_A", 9000) == (420, 2650)
    times.stopped(4000, None)
    assert times.span("item_B", 9000) == (3000, 4000)
    assert times.span("item_A", 9999) == (420, 2650)  # remembered


def test_stop_before_any_item_text_ends_the_oldest_open_segment() -> None:
    times = SegmentTimes()
    times.started(100, None)
    times.started(900, None)  # (overlap: a second start before the first stop)
    times.stopped(800, None)
    assert times.span("a", 5000) == (100, 800)
    assert times.span("b", 5000) == (900, 5000)


def test_item_without_vad_events_follows_the_last_segment() -> None:
    times = SegmentTimes()
    assert times.span("manual-1", 1500) == (0, 1500)
    times.stopped(1500, "manual-1")
    assert times.span("manual-2", 4000) == (1500, 4000)


def test_segment_memory_is_bounded() -> None:
    times = SegmentTimes()
    for i in range(1000):
        times.started(i * 10, f"item{i}")
        times.stopped(i * 10 + 5, f"item{i}")
    assert len(times._segments) <= 64
    assert len(times._by_item) <= 64
    assert times.span("item999", 99999) == (9990, 9995)


# ------------------------------------------------------------ gummy results


def _output(payload: dict[str, object]) -> object:
    import msgspec

    from adapters.dashscope import messages as m

    return msgspec.json.decode(msgspec.json.encode(payload), type=m.Output)


def _sentence(sid: int, text: str, *, end: int | None, **extra: object) -> dict[str, object]:
    return {
        "sentence_id": sid,
        "begin_time": 180,
        "end_time": end,
        "current_time": 1500,
        "text": text,
        "sentence_end": end is not None,
        "words": [],
        **extra,
    }


def test_gummy_results_either_side_may_be_missing() -> None:
    from adapters.dashscope.inference_connection import results_of
    from engine.results import Heard, Translated

    both = results_of(
        _output(  # type: ignore[arg-type]
            {
                "transcription": _sentence(0, "今天天气很好。", end=2400, stash={"text": "明"}),
                "translations": [
                    {**_sentence(0, "The weather is nice today.", end=2400), "lang": "en"}
                ],
            }
        )
    )
    assert both == [
        Heard(True, 180, 2400, "今天天气很好。", (), "明", key="0"),
        Translated("en", True, 180, 2400, "The weather is nice today.", key="0"),
    ]
    only_translation = results_of(
        _output({"translations": [{**_sentence(1, "Today", end=None), "lang": "en"}]})  # type: ignore[arg-type]
    )
    assert only_translation == [Translated("en", False, 180, None, "Today", key="1")]
    only_source = results_of(_output({"transcription": _sentence(1, "今天", end=None)}))  # type: ignore[arg-type]
    assert [type(r) for r in only_source] == [Heard]


def test_gummy_vad_pre_end_reaches_the_partial_and_can_be_retracted() -> None:
    from adapters.dashscope.inference_connection import results_of

    hinted = results_of(
        _output({"transcription": _sentence(0, "今天", end=None, vad_pre_end=True)})
    )  # type: ignore[arg-type]
    retracted = results_of(
        _output(  # type: ignore[arg-type]
            {
                "transcription": _sentence(
                    0, "今天天", end=None, vad_pre_end=True, pre_end_failed=True
                )
            }
        )
    )
    assert hinted[0].pre_end is True  # type: ignore[union-attr]
    assert retracted[0].pre_end is False  # type: ignore[union-attr]


# ------------------------------------------------------------ voice cloning


def _settings(**kw: object) -> object:
    config = SessionConfig(
        stream="s",
        model=LIVE,
        url="ws://x/api-ws/v1/inference",
        api_key=Secret("k"),
        translation=opts(targets=("en",), speech=True, **kw),
    )
    return realtime_settings(config, get_model(LIVE)).to_wire()


@pytest.mark.parametrize("frequency", ["once", "always"])
def test_cloning_once_or_always_speaks_in_the_default_voice(frequency: str) -> None:
    wire = _settings(voice_clone=frequency)
    assert wire.voice == "default"  # type: ignore[attr-defined]
    assert wire.enable_voice_clone is True  # type: ignore[attr-defined]
    assert wire.voice_clone_options.frequency == frequency  # type: ignore[attr-defined]


def test_cloning_never_keeps_a_pre_cloned_voice_id() -> None:
    wire = _settings(voice_clone="never", voice="vc-1234")
    assert wire.voice == "vc-1234"  # type: ignore[attr-defined]
    assert wire.voice_clone_options.frequency == "never"  # type: ignore[attr-defined]


def test_cloning_with_another_voice_is_refused_with_the_rule() -> None:
    with pytest.raises(ConfigError, match=r"voice must be 'default'.*fix:"):
        _settings(voice_clone="once", voice="Tina")


def test_no_cloning_sends_no_clone_options() -> None:
    import msgspec

    wire = _settings()
    assert wire.voice == "Tina"  # type: ignore[attr-defined]
    assert wire.enable_voice_clone is msgspec.UNSET  # type: ignore[attr-defined]


def test_gummy_cannot_clone() -> None:
    with pytest.raises(ConfigError, match="text only"):
        check_translation(get_model("gummy-realtime-v1"), opts(voice_clone="once"))


def test_the_endpoint_names_the_protocol_the_model_speaks_and_hides_the_query() -> None:
    url = "ws://h:1/api-ws/v1/inference?api_key=secret"
    assert endpoint(LIVE, url) == "ws://h:1/api-ws/v1/realtime"
    assert endpoint("paraformer-realtime-v2", url) == "ws://h:1/api-ws/v1/inference"
