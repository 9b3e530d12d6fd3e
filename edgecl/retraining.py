"""The learner's retraining side: a head rebuilt from the replay memory, swapped in."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from edgecl.labels import LabelMap
from edgecl.protocols import ReplayStore, Retrainable, Strategy
from edgecl.types import FloatArray, IntArray, State


class Retraining:
    """Mixed into :class:`edgecl.Learner`: :meth:`retrain` and :meth:`swap_head`."""

    strategy: Strategy
    store: ReplayStore | None
    labels: LabelMap
    model_version: int

    if TYPE_CHECKING:  # the learner's own methods, declared for the type checker only

        def memory_latents(
            self, store: ReplayStore | None = None
        ) -> tuple[FloatArray, IntArray]: ...

        def rescore(self) -> None: ...

    def retrain(
        self,
        progress: Callable[[float], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> bool:
        """Retrain the head from the replay memory, if the strategy can (e.g. ``gdumb``).

        The strategy trains a new head off to the side, so predictions (from other
        threads too) keep using the current one until it is swapped in at the end.
        ``progress(fraction)`` is told how far it got; once ``cancel()`` returns True it
        stops, nothing changes and this returns False. Do not learn while it runs: the
        daemon snapshots the memory under its writer lock instead.
        """
        strategy = self.strategy
        if not isinstance(strategy, Retrainable):
            raise ValueError(f"strategy {strategy.name!r} does not retrain from memory")
        if self.store is None or not len(self.store):
            raise ValueError("the replay memory is empty; learn some samples first")
        z, y = self.memory_latents()

        def on_progress(fraction: float) -> bool:
            if progress is not None:
                progress(fraction)
            return cancel is None or not cancel()

        state = strategy.retrain(z, y, on_progress)
        if cancel is not None and cancel():
            return False
        self.swap_head(state)
        return True

    def swap_head(self, state: State) -> None:
        """Put a head trained off to the side (a retrain's result) in place of the live one.

        Classes learned since the retrain began keep fresh slots in it; the version goes up.
        """
        self.strategy.load_state_dict(state)
        self.strategy.add_classes(len(self.labels))
        self.model_version += 1
        self.rescore()
