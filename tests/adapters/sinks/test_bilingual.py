"""Translation outputs: bilingual SRT/VTT, a .txt per language, JSONL, open_sinks."""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.sinks import JsonlSink, Sink, SrtSink, TextSink, VttSink, open_sinks
from adapters.sinks.base import AppendOnlyFile
from engine.errors import ConfigError
from engine.events import (
    AudioFrame,
    Event,
    Final,
    Partial,
    StreamEnded,
    TranslatedAudio,
    Translation,
    decode_jsonl_line,
)

LANGS = ("de", "fr")


def _final(sid: int, text: str | None = None) -> Final:
    # Sentence n runs from n s to n.5 s.
    return Final(sid, sid * 16_000, sid * 16_000 + 8_000, f"src {sid}" if text is None else text)


def _tr(sid: int, lang: str, text: str | None = None, *, final: bool = True) -> Translation:
    body = f"{lang} {sid}" if text is None else text
    return Translation(lang, sid, sid * 16_000, sid * 16_000 + 8_000, body, final)


def _cue(index: int, sid: int, *lines: str) -> str:
    return (
        f"{index}\n00:00:0{sid},000 --> 00:00:0{sid},500\n"
        + "".join(f"{line}\n" for line in lines)
        + "\n"
    )


def _write_all(sink: Sink, events: Sequence[Event]) -> None:
    for event in events:
        sink.write(event)
    sink.close()


def _srt(tmp_path: Path, **kwargs: object) -> SrtSink:
    return SrtSink(tmp_path / "out.srt", languages=LANGS, **kwargs)  # type: ignore[arg-type]


class TestBilingualCues:
    def test_translations_after_the_final(self, tmp_path: Path) -> None:
        """The cue waits for every language, then shows source, de, fr."""
        sink = _srt(tmp_path)
        sink.write(_final(1))
        sink.write(_tr(1, "de"))
        assert sink.path.read_text() == ""
        sink.write(_tr(1, "fr"))
        assert sink.path.read_text() == _cue(1, 1, "src 1", "de 1", "fr 1")
        sink.close()
        assert sink.incomplete_cues == 0

    def test_translations_before_the_final(self, tmp_path: Path) -> None:
        """Translations that come first are held until their sentence's final."""
        sink = _srt(tmp_path)
        sink.write(_tr(1, "fr"))
        sink.write(_tr(1, "de"))
        assert sink.held == 1
        sink.write(_final(1))
        assert sink.path.read_text() == _cue(1, 1, "src 1", "de 1", "fr 1")
        assert sink.held == 0
        sink.close()

    def test_line_order_follows_the_languages_given(self, tmp_path: Path) -> None:
        """Lines go source first, then languages in the sink's order, not arrival order."""
        path = tmp_path / "out.srt"
        _write_all(SrtSink(path, languages=["fr", "de"]), [_tr(1, "de"), _final(1), _tr(1, "fr")])
        assert path.read_text() == _cue(1, 1, "src 1", "fr 1", "de 1")

    def test_missing_translation_is_written_at_close_and_counted(self, tmp_path: Path) -> None:
        """close() writes a held cue with what it has; the gap is counted, not silent."""
        sink = _srt(tmp_path)
        _write_all(sink, [_final(1), _tr(1, "de"), _final(2), _tr(2, "de"), _tr(2, "fr")])
        assert sink.path.read_text() == _cue(1, 1, "src 1", "de 1") + _cue(
            2, 2, "src 2", "de 2", "fr 2"
        )
        assert sink.incomplete_cues == 1

    def test_complete_cue_waits_behind_an_older_one(self, tmp_path: Path) -> None:
        """Cues stay in sentence order: sentence 2 waits for sentence 1's translations."""
        sink = _srt(tmp_path)
        for event in [_final(1), _final(2), _tr(2, "de"), _tr(2, "fr"), _tr(1, "de")]:
            sink.write(event)
        assert sink.path.read_text() == ""
        sink.write(_tr(1, "fr"))
        assert sink.path.read_text() == _cue(1, 1, "src 1", "de 1", "fr 1") + _cue(
            2, 2, "src 2", "de 2", "fr 2"
        )
        sink.close()

    def test_hold_bound_overflow(self, tmp_path: Path) -> None:
        """Past max_held waiting cues the oldest is written as is; a later result for it is late."""
        sink = _srt(tmp_path, max_held=2)
        for sid in (1, 2, 3):
            sink.write(_final(sid))
        assert sink.path.read_text() == _cue(1, 1, "src 1")
        assert sink.incomplete_cues == 1
        sink.write(_tr(1, "de"))
        assert sink.late_results == 1
        for event in [_tr(2, "de"), _tr(2, "fr"), _tr(3, "de"), _tr(3, "fr")]:
            sink.write(event)
        sink.close()
        assert sink.path.read_text() == (
            _cue(1, 1, "src 1")
            + _cue(2, 2, "src 2", "de 2", "fr 2")
            + _cue(3, 3, "src 3", "de 3", "fr 3")
        )
        assert (sink.incomplete_cues, sink.late_results) == (1, 1)

    def test_translation_only_stream(self, tmp_path: Path) -> None:
        """Without transcription a cue takes the translations' times and lines only."""
        sink = _srt(tmp_path, transcript=False)
        sink.write(_tr(1, "de"))
        sink.write(Translation("fr", 1, 16_000, 12_000, "fr 1", True))
        assert sink.path.read_text() == _cue(1, 1, "de 1", "fr 1")
        sink.close()

    def test_sentence_without_final_in_a_transcribing_stream(self, tmp_path: Path) -> None:
        """A translated sentence that never got a final is written once a later final comes."""
        sink = _srt(tmp_path)
        sink.write(_tr(1, "de"))
        sink.write(_tr(1, "fr"))
        assert sink.path.read_text() == ""
        sink.write(_final(2))
        assert sink.path.read_text() == _cue(1, 1, "de 1", "fr 1")
        sink.close()
        assert sink.incomplete_cues == 1

    def test_blank_texts(self, tmp_path: Path) -> None:
        """A blank translation has no line but completes its cue; all blank means no cue."""
        sink = _srt(tmp_path)
        _write_all(
            sink,
            [
                _final(1),
                _tr(1, "de", " "),
                _tr(1, "fr"),
                _final(2, ""),
                _tr(2, "de", ""),
                _tr(2, "fr", ""),
            ],
        )
        assert sink.path.read_text() == _cue(1, 1, "src 1", "fr 1")
        assert sink.incomplete_cues == 0

    def test_each_language_is_one_line(self, tmp_path: Path) -> None:
        """Multi-line texts are joined, so the nth line is always the same language."""
        path = tmp_path / "out.srt"
        _write_all(SrtSink(path, languages=["de"]), [_final(1, "a\nb"), _tr(1, "de", "c\r\nd")])
        assert path.read_text() == _cue(1, 1, "a b", "c d")

    def test_previews_and_other_languages_are_ignored(self, tmp_path: Path) -> None:
        """Only final translations into the sink's languages take part."""
        path = tmp_path / "out.srt"
        _write_all(
            SrtSink(path, languages=["de"]),
            [_tr(1, "de", "pre", final=False), _tr(1, "ja"), _final(1), _tr(1, "de")],
        )
        assert path.read_text() == _cue(1, 1, "src 1", "de 1")

    def test_vtt(self, tmp_path: Path) -> None:
        """VTT cues are bilingual too, with header and escaping."""
        path = tmp_path / "out.vtt"
        _write_all(VttSink(path, languages=["de"]), [_final(1, "a < b"), _tr(1, "de", "a & b")])
        assert path.read_text() == (
            "WEBVTT\n\n1\n00:00:01.000 --> 00:00:01.500\na &lt; b\na &amp; b\n\n"
        )

    def test_without_languages_translations_change_nothing(self, tmp_path: Path) -> None:
        """An empty language list keeps today's output byte for byte."""
        events: list[Event] = [_final(1), _tr(1, "de"), _final(3), _tr(2, "fr"), _final(2)]
        plain, mono = tmp_path / "plain.srt", tmp_path / "mono.srt"
        _write_all(SrtSink(plain), [e for e in events if isinstance(e, Final)])
        _write_all(SrtSink(mono, languages=()), events)
        assert mono.read_bytes() == plain.read_bytes()
        assert mono.read_text().count(" --> ") == 3

    def test_valid_prefix_after_each_write(self, tmp_path: Path) -> None:
        """Held cues are in memory only; the file always ends at a whole cue."""
        sink = _srt(tmp_path)
        for event in [_final(1), _tr(1, "de"), _tr(2, "de"), _tr(1, "fr"), _final(2), _tr(2, "fr")]:
            sink.write(event)
            text = sink.path.read_text()
            assert text == "" or text.endswith("\n\n")
        sink.close()
        assert sink.path.read_text().count(" --> ") == 2

    def test_failed_write_keeps_the_cue_and_its_number(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A cue that could not be written stays held and is written by the next attempt."""
        sink = _srt(tmp_path)
        sink.write(_final(1))
        sink.write(_tr(1, "de"))
        real_write = os.write

        def full(fd: int, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "write", full)
        with pytest.raises(OSError, match="No space"):
            sink.write(_tr(1, "fr"))
        monkeypatch.setattr(os, "write", real_write)
        assert sink.held == 1
        sink.close()
        assert sink.path.read_text() == _cue(1, 1, "src 1", "de 1", "fr 1")

    def test_close_closes_the_file_even_when_the_flush_fails(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failed flush at close still releases the descriptor; close stays idempotent."""
        sink = _srt(tmp_path)
        sink.write(_final(1))

        def full(fd: int, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "write", full)
        with pytest.raises(OSError, match="No space"):
            sink.close()
        monkeypatch.undo()
        sink.close()
        with pytest.raises(ValueError, match="closed"):
            sink.write(_tr(1, "de"))


# ------------------------------------------------------------ property


@st.composite
def _interleavings(draw: st.DrawFn) -> tuple[tuple[str, ...], int, list[Event]]:
    """Languages, a sentence count and an arrival order: finals in order, translations anywhere."""
    langs = tuple(draw(st.lists(st.sampled_from(["de", "fr", "ja"]), min_size=1, unique=True)))
    count = draw(st.integers(min_value=1, max_value=7))
    finals: list[Event] = [_final(sid) for sid in range(1, count + 1)]
    translations: list[Event] = [_tr(sid, lang) for sid in range(1, count + 1) for lang in langs]
    order = draw(st.permutations(finals + translations))
    # The session emits finals in sentence order: keep their slots, restore their order.
    ordered = iter(finals)
    return langs, count, [next(ordered) if isinstance(e, Final) else e for e in order]


def _cues(text: str) -> list[tuple[int, int, list[str]]]:
    """(index, sentence id from the start second, lines) per cue."""
    out = []
    for block in text.split("\n\n")[:-1]:
        index, timing, *lines = block.split("\n")
        out.append((int(index), int(timing[6:8]), lines))
    return out


class TestInterleavingProperty:
    @settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(case=_interleavings())
    def test_any_interleaving_gives_exact_cues(
        self, tmp_path: Path, case: tuple[tuple[str, ...], int, list[Event]]
    ) -> None:
        """With room to hold every sentence, any arrival order gives the exact, ordered SRT."""
        langs, count, events = case
        path = tmp_path / "p.srt"
        sink = SrtSink(path, languages=langs, max_held=count)
        _write_all(sink, events)
        expected = [
            (sid, sid, [f"src {sid}", *(f"{lang} {sid}" for lang in langs)])
            for sid in range(1, count + 1)
        ]
        assert _cues(path.read_text()) == expected
        assert (sink.incomplete_cues, sink.late_results) == (0, 0)

    @settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(case=_interleavings(), max_held=st.integers(min_value=0, max_value=3))
    def test_bounded_hold_loses_nothing_silently(
        self, tmp_path: Path, case: tuple[tuple[str, ...], int, list[Event]], max_held: int
    ) -> None:
        """With a small hold, cues stay ordered and every result is written or counted late."""
        langs, _, events = case
        path = tmp_path / "p.srt"
        sink = SrtSink(path, languages=langs, max_held=max_held)
        _write_all(sink, events)
        cues = _cues(path.read_text())
        assert [index for index, _, _ in cues] == list(range(1, len(cues) + 1))
        sids = [sid for _, sid, _ in cues]
        assert sids == sorted(set(sids))
        for _, sid, lines in cues:
            full = [f"src {sid}", *(f"{lang} {sid}" for lang in langs)]
            assert lines == [line for line in full if line in lines]
        written = sum(len(lines) for _, _, lines in cues)
        assert written + sink.late_results == len(events)
        missing = sum(
            1
            for _, sid, lines in cues
            if len([x for x in lines if not x.startswith("src")]) < len(langs)
        )
        assert sink.incomplete_cues == missing


# ------------------------------------------------------------ txt per language


class TestTextPerLanguage:
    def test_writes_one_languages_final_translations(self, tmp_path: Path) -> None:
        """A language's .txt gets its final translations as they arrive, nothing else."""
        path = tmp_path / "out.de.txt"
        sink = TextSink(path, lang="de")
        _write_all(
            sink,
            [
                _tr(1, "de", "vorschau", final=False),
                _final(1),
                _tr(1, "de", "eins\nzwei"),
                _tr(1, "fr"),
                _tr(2, "de", " "),
                _tr(3, "de"),
            ],
        )
        assert path.read_text() == "eins zwei\nde 3\n"
        assert sink.out_of_order == 0

    def test_source_txt_ignores_translations(self, tmp_path: Path) -> None:
        """The plain .txt stays the source transcript."""
        path = tmp_path / "out.txt"
        _write_all(TextSink(path), [_tr(1, "de"), _final(1)])
        assert path.read_text() == "src 1\n"

    def test_out_of_order_is_written_and_counted(self, tmp_path: Path) -> None:
        """A translation older than one already written is kept, and counted."""
        path = tmp_path / "out.de.txt"
        sink = TextSink(path, lang="de")
        _write_all(sink, [_tr(2, "de"), _tr(1, "de"), _tr(3, "de")])
        assert path.read_text() == "de 2\nde 1\nde 3\n"
        assert sink.out_of_order == 1


# ------------------------------------------------------------ jsonl


class TestJsonlBilingual:
    def test_bilingual_stream_round_trips(self, tmp_path: Path) -> None:
        """Translations, previews included, are logged and decode back equal; audio is not."""
        events: list[Event] = [
            Partial(1, 16_000, "src", stash=" 1", stream="s"),
            _tr(1, "de", "de", final=False),
            _tr(1, "fr"),
            _final(1),
            TranslatedAudio("resp-1", b"\0\0", stream="s"),
            _tr(1, "de"),
            AudioFrame(0, b"\0\0", 16_000),
            StreamEnded("ok", finals=1, stream="s"),
        ]
        path = tmp_path / "out.jsonl"
        _write_all(JsonlSink(path), events)
        decoded = [decode_jsonl_line(line) for line in path.read_bytes().splitlines()]
        assert decoded == [e for e in events if not isinstance(e, AudioFrame | TranslatedAudio)]


# ------------------------------------------------------------ open_sinks


class TestOpenSinksWithLanguages:
    def test_opens_bilingual_subtitles_and_a_txt_per_language(self, tmp_path: Path) -> None:
        """Subtitles get the languages; txt adds stem.<lang>.txt per language (duplicates once)."""
        out = tmp_path / "out"
        sinks = open_sinks(out, "talk", ["srt", "txt", "vtt", "jsonl"], ["de", "fr", "de"])
        try:
            srt, txt, txt_de, txt_fr, vtt, jsonl = sinks
            assert isinstance(srt, SrtSink) and srt.languages == ("de", "fr")
            assert isinstance(vtt, VttSink) and vtt.languages == ("de", "fr")
            assert isinstance(txt, TextSink) and txt.lang is None
            assert isinstance(txt_de, TextSink) and txt_de.lang == "de"
            assert isinstance(txt_fr, TextSink) and txt_fr.lang == "fr"
            assert isinstance(jsonl, JsonlSink)
            assert sorted(p.name for p in out.iterdir()) == [
                "talk.de.txt",
                "talk.fr.txt",
                "talk.jsonl",
                "talk.srt",
                "talk.txt",
                "talk.vtt",
            ]
        finally:
            for sink in sinks:
                sink.close()

    def test_without_languages_nothing_changes(self, tmp_path: Path) -> None:
        """No languages: the same sinks as before, monolingual."""
        sinks = open_sinks(tmp_path, "talk", ["srt", "txt"])
        try:
            assert [type(s) for s in sinks] == [SrtSink, TextSink]
            assert isinstance(sinks[0], SrtSink) and sinks[0].languages == ()
        finally:
            for sink in sinks:
                sink.close()

    def test_translation_only(self, tmp_path: Path) -> None:
        """transcript=False reaches the subtitles: cues do not wait for a source."""
        (sink,) = open_sinks(tmp_path, "talk", ["srt"], ["de"], transcript=False)
        _write_all(sink, [_tr(1, "de")])
        assert (tmp_path / "talk.srt").read_text() == _cue(1, 1, "de 1")

    @pytest.mark.parametrize("lang", ["../x", "de/fr", "", " ", ".hidden", "de.txt"])
    def test_invalid_language(self, tmp_path: Path, lang: str) -> None:
        """A language that cannot name a file is a one-line ConfigError; nothing is created."""
        with pytest.raises(ConfigError) as info:
            open_sinks(tmp_path / "out", "talk", ["txt"], ["de", lang])
        assert "\n" not in str(info.value)
        assert "language" in str(info.value)
        assert not (tmp_path / "out").exists()

    def test_failure_closes_the_files_already_open(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When stem.<lang>.txt cannot be created the earlier files are closed again."""
        (tmp_path / "talk.fr.txt").mkdir()
        closed: list[str] = []
        real_close = AppendOnlyFile.close

        def close(self: AppendOnlyFile) -> None:
            closed.append(self.path.name)
            real_close(self)

        monkeypatch.setattr(AppendOnlyFile, "close", close)
        with pytest.raises(ConfigError, match=r"cannot create output file .*talk\.fr\.txt"):
            open_sinks(tmp_path, "talk", ["srt", "txt"], ["de", "fr"])
        assert closed == ["talk.srt", "talk.txt", "talk.de.txt"]
