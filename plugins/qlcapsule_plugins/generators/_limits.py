"""Shared by the template spec and the renderer: the time-limit exception and short quoting of answers."""

from __future__ import annotations

from typing import Any

MAX_QUOTED = 80  # characters of an answer quoted in an error message


class RenderTimeout(Exception):
    """A template's rendering (or a question's regex) ran past its time budget."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"over {seconds:g} s")
        self.seconds = seconds


def short(value: Any, limit: int = MAX_QUOTED) -> str:
    """``repr(value)``, cut to ``limit`` characters so an error line stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
