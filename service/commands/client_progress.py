"""A progress bar for the client commands, on stderr: redrawn in place on a terminal, a
plain line now and then otherwise (a log file or a pipe gets no carriage returns)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def _duration(seconds: float) -> str:
    """
    >>> _duration(5.2), _duration(125), _duration(3725)
    ('0:05', '2:05', '1:02:05')
    """
    s = int(seconds + 0.5)
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """``count/total``, the rate and the time left, for ``what`` (``"teach"``).

    >>> import io
    >>> out = io.StringIO()
    >>> p = Progress(4, "teach", out, clock=iter([0.0, 2.0, 2.0]).__next__)
    >>> p.advance(4); p.close()
    >>> out.getvalue()
    'teach: 4/4 images, 2.0 images/s, done in 0:02\\n'
    """

    WIDTH = 24

    def __init__(
        self,
        total: int,
        what: str,
        stream: TextIO | None = None,
        *,
        every_s: float = 10.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock if clock is not None else time.monotonic
        self.total, self.what, self.every_s = total, what, every_s
        self.count = 0
        self.started = self.clock()
        self.last = self.started
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.shown = False  # a bar is on the terminal's last line

    def _rate(self, now: float) -> float:
        elapsed = now - self.started
        return self.count / elapsed if elapsed > 0 else 0.0

    def _line(self, now: float) -> str:
        rate = self._rate(now)
        left = (self.total - self.count) / rate if rate > 0 else None
        eta = "ETA " + (_duration(left) if left is not None else "?")
        if self.tty:
            filled = self.WIDTH * self.count // max(self.total, 1)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            pct = 100 * self.count // max(self.total, 1)
            return f"{self.what} [{bar}] {self.count}/{self.total} {pct}% {rate:.1f}/s {eta}"
        return f"{self.what}: {self.count}/{self.total} images, {rate:.1f} images/s, {eta}"

    def advance(self, n: int) -> None:
        self.count += n
        now = self.clock()
        if self.count >= self.total:
            return  # close() writes the last line
        if self.tty:
            if now - self.last >= 0.1 or not self.shown:
                self.stream.write("\r\x1b[K" + self._line(now))
                self.stream.flush()
                self.shown, self.last = True, now
        elif now - self.last >= self.every_s:
            self.stream.write(self._line(now) + "\n")
            self.stream.flush()
            self.last = now

    def clear(self) -> None:
        """Take the bar off the terminal before other lines are printed."""
        if self.tty and self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False

    def close(self) -> None:
        """The last line: how many, how fast, how long it took."""
        now = self.clock()
        self.clear()
        took = _duration(now - self.started)
        self.stream.write(
            f"{self.what}: {self.count}/{self.total} images, {self._rate(now):.1f} images/s, "
            f"done in {took}\n"
        )
        self.stream.flush()
