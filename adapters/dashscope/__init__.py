"""dashscope."""

from __future__ import annotations
