"""The connection for a model: one constructor over both protocols, one name for both types."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from .inference_connection import InferenceConnection
from .models import realtime_url
from .realtime_connection import RealtimeConnection

if TYPE_CHECKING:
    from .connection import LinkSettings
    from .models import ModelSpec
    from .transport import Dialer

__all__ = ["Link", "new_link"]

Link = InferenceConnection | RealtimeConnection
"""A connection on either protocol; the session uses only what both share."""


def new_link(
    spec: ModelSpec,
    model: str,
    *,
    settings: LinkSettings,
    dial: Dialer,
    task_id: str,
    parameters: dict[str, Any],
) -> Link:
    """A connection (not yet running) for one task of ``model`` (``spec``'s protocol).

    ``settings.url`` is the inference endpoint; the realtime endpoint is derived
    from it. ``parameters`` are run-task's for the inference protocol; for the realtime
    protocol, ``parameters["session"]`` is the ``SessionSettings`` to send.
    """
    if spec.protocol == "realtime":
        settings = msgspec.structs.replace(settings, url=realtime_url(settings.url, model))
        return RealtimeConnection(
            settings=settings, dial=dial, task_id=task_id, session=parameters["session"]
        )
    return InferenceConnection(
        settings=settings, dial=dial, task_id=task_id, model=model, parameters=parameters
    )
