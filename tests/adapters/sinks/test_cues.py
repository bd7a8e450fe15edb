from __future__ import annotations

import pytest

from adapters.sinks.cues import Sentence, SentenceHold, span_ms
from engine.events import Final, Partial, Translation


def _final(sid: int, text: str = "src") -> Final:
    return Final(sid, sid * 16_000, sid * 16_000 + 8_000, text)


def _tr(sid: int, lang: str, *, final: bool = True, end: int | None = -1) -> Translation:
    stop = sid * 16_000 + 8_000 if end == -1 else end
    return Translation(lang, sid, sid * 16_000, stop, f"{lang}{sid}", final)


def _drain(hold: SentenceHold, *, flush: bool = False) -> list[int]:
    out = []
    while (sentence := hold.next_out(flush=flush)) is not None:
        out.append(sentence.sentence_id)
        hold.pop(sentence)
    return out


class TestSentenceHold:
    def test_waits_for_every_language_and_the_source(self) -> None:
        """A sentence leaves once its final and each language's final translation are in."""
        hold = SentenceHold(["de", "fr"])
        assert hold.add(_tr(1, "de"))
        assert hold.add(_final(1))
        assert hold.next_out() is None
        assert hold.add(_tr(1, "fr"))
        assert _drain(hold) == [1]

    def test_ignores_what_it_does_not_use(self) -> None:
        """Previews, other languages and non-recognition events are not taken."""
        hold = SentenceHold(["de"])
        assert not hold.add(_tr(1, "de", final=False))
        assert not hold.add(_tr(1, "ja"))
        assert not hold.add(Partial(1, 0, "x"))
        assert len(hold) == 0

    def test_leaves_in_sentence_order(self) -> None:
        """A complete sentence waits behind an older incomplete one."""
        hold = SentenceHold(["de"])
        for event in (_final(1), _final(2), _tr(2, "de")):
            hold.add(event)
        assert _drain(hold) == []
        hold.add(_tr(1, "de"))
        assert _drain(hold) == [1, 2]

    def test_later_final_settles_a_sourceless_sentence(self) -> None:
        """Finals come in order, so a later final means an earlier sentence gets none."""
        hold = SentenceHold(["de"])
        hold.add(_tr(1, "de"))
        assert _drain(hold) == []
        hold.add(_final(2))
        assert _drain(hold) == [1]

    def test_translation_only_needs_no_source(self) -> None:
        """Without transcription a sentence is complete with its translations."""
        hold = SentenceHold(["de"], transcript=False)
        hold.add(_tr(1, "de"))
        assert _drain(hold) == [1]

    def test_bound_lets_the_oldest_leave(self) -> None:
        """More than max_held waiting sentences push the oldest out, incomplete."""
        hold = SentenceHold(["de"], max_held=2)
        for sid in (1, 2, 3):
            hold.add(_final(sid))
        sentence = hold.next_out()
        assert sentence is not None
        assert sentence.sentence_id == 1
        assert hold.missing(sentence) == ["de"]
        hold.pop(sentence)
        assert _drain(hold) == []
        assert _drain(hold, flush=True) == [2, 3]

    def test_late_results_are_counted_and_dropped(self) -> None:
        """A result for a sentence that left, or an older one, is late."""
        hold = SentenceHold(["de"], max_held=0)
        hold.add(_final(2))
        assert _drain(hold) == [2]
        assert not hold.add(_tr(2, "de"))
        assert not hold.add(_tr(1, "de"))
        assert not hold.add(_final(2))
        assert hold.late == 3
        assert len(hold) == 0

    def test_without_languages_finals_pass_straight_through(self) -> None:
        """No languages: every final leaves at once, whatever its id (today's behaviour)."""
        hold = SentenceHold()
        for sid in (5, 2):
            hold.add(_final(sid))
            assert _drain(hold) == [sid]
        assert hold.late == 0

    def test_sentence_stays_until_popped(self) -> None:
        """next_out does not remove, so a failed write can be retried."""
        hold = SentenceHold()
        hold.add(_final(1))
        assert hold.next_out() is hold.next_out()
        assert len(hold) == 1

    def test_languages_deduplicated_in_order(self) -> None:
        """Duplicate languages count once; the order given is kept."""
        assert SentenceHold(["fr", "de", "fr"]).languages == ("fr", "de")

    @pytest.mark.parametrize(
        ("languages", "max_held", "match"), [([" "], 1, "blank"), (["de"], -1, "negative")]
    )
    def test_invalid_arguments(self, languages: list[str], max_held: int, match: str) -> None:
        """A blank language or a negative bound is a programming error."""
        with pytest.raises(ValueError, match=match):
            SentenceHold(languages, max_held=max_held)


class TestSpan:
    def test_source_times_win(self) -> None:
        """With a source final the cue takes its times."""
        sentence = Sentence(1, _final(1), {"de": _tr(1, "de", end=99_999)})
        assert sentence.span_ms() == (1_000, 1_500)

    def test_translation_times_cover_all_languages(self) -> None:
        """Without a source the cue spans every translation; a missing end is the start."""
        sentence = Sentence(
            1,
            translations={
                "de": Translation("de", 1, 16_000, None, "x", True),
                "fr": Translation("fr", 1, 32_000, 48_000, "y", True, rate=16_000),
            },
        )
        assert sentence.span_ms() == (1_000, 3_000)

    def test_at_least_one_ms(self) -> None:
        """A zero-length or inverted span still lasts 1 ms."""
        assert span_ms(16_000, 16_000, 16_000) == (1_000, 1_001)
        assert Sentence(1, translations={"de": _tr(1, "de", end=0)}).span_ms() == (1_000, 1_001)

    def test_empty_sentence_has_no_span(self) -> None:
        """A sentence with nothing in it is a bug, not a cue."""
        with pytest.raises(ValueError, match="neither"):
            Sentence(3).span_ms()
