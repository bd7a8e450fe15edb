"""Stenograph: a trio actor engine for realtime speech recognition and translation."""

from __future__ import annotations
