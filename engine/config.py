"""Configuration Structs of a stream and its session, and the Secret wrapper for API keys."""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from engine.policy import CLI, RestartPolicy

__all__ = [
    "USER_AGENT",
    "RecognitionOptions",
    "Secret",
    "SessionConfig",
    "TranslationOptions",
]

USER_AGENT: Final = "stenograph/0.1.0"


class Secret:
    """An API key that never shows itself in repr, str, logs or encoded output.

    ``reveal()`` is the only way to the value; call it where the key goes on the wire.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class RecognitionOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Optional recognition parameters; ``None`` means "not sent" (the service default).

    Which of them a model accepts, and which language hints, is DashScope's model
    table: :func:`adapters.dashscope.models.run_task_parameters` checks them there.
    """

    language_hints: list[str] | None = None
    vocabulary_id: str | None = None
    disfluency_removal_enabled: bool | None = None
    semantic_punctuation_enabled: bool | None = None
    max_sentence_silence: int | None = None
    multi_threshold_mode_enabled: bool | None = None
    punctuation_prediction_enabled: bool | None = None
    inverse_text_normalization_enabled: bool | None = None
    heartbeat: bool | None = None

    def __post_init__(self) -> None:
        if self.max_sentence_silence is not None and not 200 <= self.max_sentence_silence <= 6000:
            raise ValueError("max_sentence_silence must be 200–6000 ms")


class TranslationOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Speech translation, for the models that translate (gummy, livetranslate).

    Attributes:
        targets: target language codes; livetranslate takes exactly one, gummy
            accepts a list (the service documents one at present).
        source: the source language; None lets the service detect it.
        transcription: also recognize the source language (its text, and the
            commit points of the replay buffer); off, translations alone settle.
        speech: livetranslate only: ask for translated speech (24 kHz PCM) as
            well as text (modalities ``text`` + ``audio``).
        voice: livetranslate's voice for translated speech; None: ``Tina``, or
            ``default`` (the speaker's own) when cloning once or always.
        voice_clone: livetranslate voice cloning: ``once`` (clone the speaker at
            the start), ``always`` (keep cloning), ``never`` (use ``voice``, which
            may be a pre-cloned voice id); None: no cloning.
        phrases: livetranslate hot phrases, source text -> target text.
        vad_silence_ms: livetranslate server-VAD silence that ends a segment;
            gummy's ``max_end_silence``. None: the service default.
        image: livetranslate only: an image, or a video whose frames are sent,
            as visual context (``input_image_buffer.append``).
    """

    targets: tuple[str, ...]
    source: str | None = None
    transcription: bool = True
    speech: bool = False
    voice: str | None = None
    voice_clone: Literal["never", "once", "always"] | None = None
    phrases: dict[str, str] = {}
    vad_silence_ms: int | None = None
    image: str | None = None

    def __post_init__(self) -> None:
        if not self.targets or not all(self.targets):
            raise ValueError("translation needs at least one target language")
        if len(set(self.targets)) != len(self.targets):
            raise ValueError("translation target languages must not repeat")
        if self.source is not None and not self.source:
            raise ValueError("the source language must not be empty (None: auto-detect)")
        if self.vad_silence_ms is not None and not 200 <= self.vad_silence_ms <= 6000:
            raise ValueError("vad_silence_ms must be 200–6000 ms")


class SessionConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How one stream talks to the speech service.

    Attributes:
        stream: the stream id put on every event.
        model: a model name from ``adapters.dashscope.models.MODELS``.
        url: the service's WebSocket URL: the inference endpoint (the realtime
            endpoint's URL is derived from it for realtime models).
        api_key: sent as ``Authorization: Bearer``; never logged.
        options: recognition parameters for run-task.
        translation: what to translate into (translating models only; None:
            gummy transcribes only, livetranslate refuses).
        frame_ms: audio per binary frame (the service recommends about 100 ms).
        connect_timeout_s: deadline for the TCP connect plus WebSocket handshake.
        start_timeout_s: deadline from run-task to task-started.
        finish_timeout_s: deadline from finish-task to task-finished (DESIGN §4).
        end_budget_s: the whole end of the stream, retries included: once a task
            fails after its finish-task (sent after the input ended), every retry
            must finish within this many seconds of that finish-task.
        replay_buffer_s: audio kept after the commit point (drop-oldest beyond it).
        send_timeout_s: deadline for one frame to leave (a server that stops reading).
        policy: retry policy for transient failures (``engine.policy.CLI`` or ``DAEMON``).
        seed: seeds the backoff jitter (None: random); it is logged so a run replays.
        ping_interval_s, pong_timeout_s: WebSocket ping cadence and pong deadline.
        stall_timeout_s: audio sent and no server frame for this long = a dead connection.
        replay_speed: how much faster than real time the replay buffer is resent.
        idle_timeout_s: no audio from the source for this long triggers ``idle_policy``
            (the service fails a task after 23 s without frames).
        idle_policy: ``keepalive`` sends padding silence (kept off the global timeline);
            ``finish`` finishes the task and reopens one on the next audio.
        max_task_age_s: rotate to a fresh task after this long (None: never).
        rotation_lead_s: open the next task this long before the age limit.
        rotation_grace_s: rotate even mid-sentence once this far past the limit.
    """

    stream: str
    model: str
    url: str
    api_key: Secret
    options: RecognitionOptions = RecognitionOptions(heartbeat=True)
    translation: TranslationOptions | None = None
    frame_ms: int = 100
    connect_timeout_s: float = 10.0
    start_timeout_s: float = 10.0
    finish_timeout_s: float = 10.0
    end_budget_s: float = 30.0
    replay_buffer_s: float = 120.0
    send_timeout_s: float = 10.0
    policy: RestartPolicy = CLI
    seed: int | None = None
    ping_interval_s: float = 15.0
    pong_timeout_s: float = 10.0
    stall_timeout_s: float = 30.0
    replay_speed: float = 10.0
    idle_timeout_s: float = 10.0
    idle_policy: Literal["keepalive", "finish"] = "keepalive"
    max_task_age_s: float | None = None
    rotation_lead_s: float = 5.0
    rotation_grace_s: float = 30.0

    def __post_init__(self) -> None:
        if self.idle_timeout_s >= 23.0:
            raise ValueError("idle_timeout_s must be under the service's 23 s idle limit")
        if not self.end_budget_s > 0:
            raise ValueError("end_budget_s must be positive")
        if self.replay_speed <= 0 or self.frame_ms <= 0:
            raise ValueError("replay_speed and frame_ms must be positive")
