"""Transcripts: the bytes exchanged with an instrument, with timestamps, switchable."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path


class Direction(StrEnum):
    OUT = "out"
    IN = "in"
    NOTE = "note"


@dataclass(frozen=True)
class TranscriptEntry:
    time: float  # POSIX time, s
    direction: Direction
    data: bytes

    def format(self) -> str:
        stamp = datetime.fromtimestamp(self.time, UTC).isoformat(timespec="microseconds")
        arrow = {Direction.OUT: ">", Direction.IN: "<", Direction.NOTE: "#"}[self.direction]
        return f"{stamp} {arrow} {self.data!r}"


class Transcript:
    """Bytes in/out with timestamps; keeps the last ``keep`` entries, optionally a file.

    Switch it per instrument with ``enabled``; a disabled transcript costs nothing.
    """

    def __init__(self, path: str | Path | None = None, *, enabled: bool = True, keep: int = 2000):
        self.enabled = enabled
        self.path = Path(path) if path is not None else None
        self.entries: deque[TranscriptEntry] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def record(self, direction: Direction, data: bytes) -> None:
        if not self.enabled or not data:
            return
        entry = TranscriptEntry(time.time(), direction, bytes(data))
        with self._lock:
            self.entries.append(entry)
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(entry.format() + "\n")

    def note(self, text: str) -> None:
        self.record(Direction.NOTE, text.encode("utf-8", "replace"))

    def lines(self) -> list[str]:
        with self._lock:
            return [e.format() for e in self.entries]
