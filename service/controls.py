"""What the writer's queue carries besides learn requests: state changes it runs under the
lock (a retrained head, a fleet merge), each checkpointed before its future resolves."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from service.writer import LearnJob


@dataclass
class Control:
    """A state change the writer thread runs under the lock (e.g. a retrained head)."""

    action: Callable[[], None]
    future: Future[None] = field(default_factory=Future)


def item_size(item: LearnJob | Control) -> int:
    """Samples a queue item holds (a control: none)."""
    return len(item.labels) if isinstance(item, LearnJob) else 0
