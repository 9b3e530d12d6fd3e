"""Label ↔ class index map that grows as new labels appear."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from edgecl.types import Label, State, check_label


class LabelMap:
    """Assigns each new label the next index; indices never change.

    >>> m = LabelMap()
    >>> m.encode_many(["cat", 7, "cat"])
    [0, 1, 0]
    >>> m.decode(1), len(m)
    (7, 2)
    """

    def __init__(self, labels: Iterable[Label] = ()) -> None:
        self._labels: list[Label] = []
        self._index: dict[tuple[type, Label], int] = {}
        for label in labels:
            self.encode(label)

    @staticmethod
    def _key(label: Label) -> tuple[type, Label]:
        # "1" and 1 are different labels.
        return (type(label), label)

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, label: object) -> bool:
        try:
            return self._key(check_label(label)) in self._index
        except ValueError:
            return False

    @property
    def labels(self) -> list[Label]:
        return list(self._labels)

    def index(self, label: Label) -> int:
        """Index of a known label; ``KeyError`` for an unknown one."""
        return self._index[self._key(check_label(label))]

    def encode(self, label: Label) -> int:
        key = self._key(check_label(label))
        idx = self._index.get(key)
        if idx is None:
            idx = len(self._labels)
            self._labels.append(key[1])
            self._index[key] = idx
        return idx

    def encode_many(self, labels: Sequence[Label]) -> list[int]:
        return [self.encode(label) for label in labels]

    def decode(self, index: int) -> Label:
        return self._labels[index]

    def state_dict(self) -> State:
        return {"labels": list(self._labels)}

    @classmethod
    def from_state(cls, state: State) -> LabelMap:
        return cls(state["labels"])
