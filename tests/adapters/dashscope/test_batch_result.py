"""Batch result files (adapters/dashscope/batch_result.py): SenseVoice tags, sentences, Finals."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.dashscope.batch_result import (
    ResultFile,
    Tags,
    parse_result_file,
    sentences,
    strip_tags,
    to_finals,
)
from engine.errors import RemoteProtocolError
from engine.events import Final, Word, decode_jsonl_line, encode_jsonl_line

PARAFORMER = {
    "file_url": "https://example.com/meeting.wav",
    "properties": {
        "audio_format": "pcm_s16le",
        "channels": [0],
        "original_sampling_rate": 16000,
        "original_duration_in_milliseconds": 3834,
    },
    "transcripts": [
        {
            "channel_id": 0,
            "content_duration_in_milliseconds": 2480,
            "text": "Hello world, this is the speech lab.",
            "sentences": [
                {
                    "sentence_id": 1,
                    "begin_time": 760,
                    "end_time": 3240,
                    "speaker_id": 0,
                    "text": "Hello world, this is the speech lab.",
                    "words": [
                        {"begin_time": 760, "end_time": 1000, "text": "Hello", "punctuation": ""},
                        {
                            "begin_time": 1000,
                            "end_time": 1400,
                            "text": " world",
                            "punctuation": ",",
                        },
                        {
                            "begin_time": 1400,
                            "end_time": 3240,
                            "text": " this is the speech lab",
                            "punctuation": ".",
                        },
                    ],
                }
            ],
        }
    ],
}


class TestStripTags:
    @pytest.mark.parametrize(
        ("text", "clean", "tags"),
        [
            ("plain text", "plain text", Tags()),
            (
                "<|Speech|><|NEUTRAL|>Hello everyone, welcome.<|/Speech|>",
                "Hello everyone, welcome.",
                Tags(emotion="NEUTRAL", events=("Speech",)),
            ),
            (
                "<|en|><|HAPPY|><|BGM|>Great news <|Laughter|>ha<|/Laughter|>!<|/BGM|>",
                "Great news ha!",
                Tags(emotion="HAPPY", events=("BGM", "Laughter"), language="en"),
            ),
            (
                "<|SPECIAL_TOKEN_1|><|SAD|><|ANGRY|>oh no<|withitn|>",
                "oh no",
                Tags(emotion="SAD", other=("SPECIAL_TOKEN_1", "withitn")),
            ),
            ("<|Applause|><|/Applause|>", "", Tags(events=("Applause",))),
            ("<|Speech|>你好<|/Speech|>", "你好", Tags(events=("Speech",))),
            ("a <| not a tag |> b", "a <| not a tag |> b", Tags()),
        ],
    )
    def test_strip(self, text: str, clean: str, tags: Tags) -> None:
        """Every <|…|> token leaves the text; emotion, events, language become fields."""
        assert strip_tags(text) == (clean, tags)

    @given(st.text())
    def test_never_leaves_a_tag(self, text: str) -> None:
        """Whatever the input, the cleaned text holds no complete <|TAG|> token."""
        clean, _ = strip_tags(f"<|Speech|>{text}<|/Speech|>")
        assert "<|Speech|>" not in clean
        assert "<|/Speech|>" not in clean


class TestSentences:
    def test_paraformer(self) -> None:
        """Times in ms, words kept, speaker id kept."""
        result = parse_result_file(json.dumps(PARAFORMER).encode())
        (only,) = sentences(result)
        assert (only.start_ms, only.end_ms, only.speaker_id) == (760, 3240, 0)
        assert only.text == "Hello world, this is the speech lab."
        assert [w.text for w in only.words] == ["Hello", " world", " this is the speech lab"]

    def test_channels_interleave_by_time(self) -> None:
        """Two channels' sentences come out in start order; clamped when end < begin."""
        body = {
            "transcripts": [
                {"channel_id": 0, "sentences": [{"begin_time": 500, "end_time": 900, "text": "b"}]},
                {
                    "channel_id": 1,
                    "sentences": [
                        {"begin_time": 100, "end_time": 400, "text": "a"},
                        {"begin_time": 1200, "end_time": 1100, "text": "c"},
                    ],
                },
            ]
        }
        out = sentences(parse_result_file(json.dumps(body).encode()))
        assert [(s.text, s.channel_id) for s in out] == [("a", 1), ("b", 0), ("c", 1)]
        assert out[2].end_ms == out[2].start_ms == 1200

    @pytest.mark.parametrize("body", [b"[]", b"nope", b'{"transcripts": [{"sentences": [{}]}]}'])
    def test_malformed(self, body: bytes) -> None:
        with pytest.raises(RemoteProtocolError, match="not a transcription result"):
            parse_result_file(body)


class TestFinals:
    def test_global_samples_at_16k(self) -> None:
        """ms → samples at 16 kHz; numbered from 1; text-less sentences dropped."""
        body = {
            "transcripts": [
                {
                    "sentences": [
                        {
                            "begin_time": 760,
                            "end_time": 3240,
                            "text": "<|Speech|><|NEUTRAL|>Hello.<|/Speech|>",
                            "words": [{"begin_time": 760, "end_time": 1000, "text": "Hello"}],
                        },
                        {"begin_time": 4000, "end_time": 4100, "text": "<|BGM|><|/BGM|>"},
                        {"begin_time": 5000, "end_time": 6000, "text": "Bye."},
                    ]
                }
            ]
        }
        finals = to_finals(
            sentences(parse_result_file(json.dumps(body).encode())), stream="s", task_id="t"
        )
        assert finals == [
            Final(
                1, 12160, 51840, "Hello.", (Word(12160, 16000, "Hello"),), 16000, "t", stream="s"
            ),
            Final(2, 80000, 96000, "Bye.", (), 16000, "t", stream="s"),
        ]
        for final in finals:
            assert decode_jsonl_line(encode_jsonl_line(final)) == final

    def test_empty(self) -> None:
        assert to_finals(sentences(ResultFile())) == []
