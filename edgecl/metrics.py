"""Prequential (test-then-train) accuracy: every labelled sample is scored before it is learned."""

from __future__ import annotations

from collections import deque

import numpy as np

from edgecl.types import IntArray, State


class Prequential:
    """Running accuracy overall, over the last ``window`` samples, and per class.

    >>> p = Prequential(window=2)
    >>> p.update(np.array([0, 1, 1]), np.array([0, 0, 1]))
    >>> round(p.accuracy, 3), p.window_accuracy, p.class_accuracy(1)
    (0.667, 0.5, 0.5)
    """

    def __init__(self, window: int = 500) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self.seen = 0
        self.correct = 0
        self._recent: deque[bool] = deque(maxlen=window)
        self.class_seen: list[int] = []
        self.class_correct: list[int] = []
        # confusions[(true, predicted)] = count, for mistakes only; at most K*(K-1) keys.
        self.confusions: dict[tuple[int, int], int] = {}

    def _grow(self, n_classes: int) -> None:
        missing = n_classes - len(self.class_seen)
        if missing > 0:
            self.class_seen.extend([0] * missing)
            self.class_correct.extend([0] * missing)

    def update(self, y_true: IntArray, y_pred: IntArray) -> None:
        """Record predictions ``y_pred`` (``-1``: no prediction possible) for ``y_true``."""
        if len(y_true):
            self._grow(int(np.max(y_true)) + 1)
        for t, p in zip(y_true.tolist(), y_pred.tolist(), strict=True):
            ok = t == p
            self.seen += 1
            self.correct += ok
            self._recent.append(ok)
            self.class_seen[t] += 1
            self.class_correct[t] += ok
            if not ok and p >= 0:
                self.confusions[(t, p)] = self.confusions.get((t, p), 0) + 1

    @property
    def accuracy(self) -> float:
        return self.correct / self.seen if self.seen else 0.0

    @property
    def window_accuracy(self) -> float:
        return sum(self._recent) / len(self._recent) if self._recent else 0.0

    def class_accuracy(self, index: int) -> float:
        if index >= len(self.class_seen) or not self.class_seen[index]:
            return 0.0
        return self.class_correct[index] / self.class_seen[index]

    def top_confusions(self, n: int = 10) -> list[tuple[int, int, int]]:
        """The ``n`` most frequent mistakes as ``(true, predicted, count)``."""
        ranked = sorted(self.confusions.items(), key=lambda kv: -kv[1])[:n]
        return [(t, p, c) for (t, p), c in ranked]

    def state_dict(self) -> State:
        return {
            "window": self.window,
            "seen": self.seen,
            "correct": self.correct,
            "recent": [int(b) for b in self._recent],
            "class_seen": list(self.class_seen),
            "class_correct": list(self.class_correct),
            "confusions": [[t, p, c] for (t, p), c in self.confusions.items()],
        }

    def load_state_dict(self, state: State) -> None:
        self.window = int(state["window"])
        self.seen = int(state["seen"])
        self.correct = int(state["correct"])
        self._recent = deque((bool(b) for b in state["recent"]), maxlen=self.window)
        self.class_seen = [int(v) for v in state["class_seen"]]
        self.class_correct = [int(v) for v in state["class_correct"]]
        self.confusions = {(int(t), int(p)): int(c) for t, p, c in state["confusions"]}
