"""Options chosen on a validation split of the training stream, never on the test set."""

from __future__ import annotations

import inspect
import logging
from dataclasses import replace

from edgecl import replay, strategies
from edgecl.bench.cl import Result, joint, run, store_budget
from edgecl.bench.recipes import RECIPES, Recipe
from edgecl.bench.streams import ClassIncrementalStream, Latents, holdout

log = logging.getLogger("edgecl.bench")

#: Learning rates tried for a strategy that takes ``lr`` and was not given one.
LR_GRID = (0.001, 0.003, 0.01, 0.03, 0.1)


def takes(strategy: str, option: str) -> bool:
    """Whether ``strategy``'s constructor has ``option`` (``joint`` is no strategy)."""
    if strategy not in strategies.names():
        return False
    factory = strategies.REGISTRY.get(strategy)
    return option in inspect.signature(factory).parameters


def validation_stream(
    stream: ClassIncrementalStream, fraction: float = 0.2
) -> ClassIncrementalStream:
    """The same experiences learned from ``1 - fraction`` of each class's training samples,
    tested on the rest."""
    fit, val = holdout(stream.train, fraction, stream.seed)
    return ClassIncrementalStream(fit, val, stream.classes, stream.seed)


def choose(
    recipe: Recipe,
    stream: ClassIncrementalStream,
    grid: tuple[float, ...] = LR_GRID,
    *,
    option: str = "lr",
    memory_items: int = 1500,
    seed: int = 0,
) -> tuple[Recipe, dict[float, float]]:
    """``recipe`` with ``option`` set to the value of ``grid`` whose final accuracy on the
    validation stream is best (the first on a tie), and every value's accuracy. A recipe
    that already sets ``option``, or a strategy without it, is returned as it is."""
    if option in recipe.options or not takes(recipe.strategy, option):
        return recipe, {}
    val = validation_stream(stream)
    scores: dict[float, float] = {}
    for value in grid:
        tried = replace(recipe, options={**recipe.options, option: value})
        scores[value] = run(tried, val, memory_items=memory_items, seed=seed).final
        log.info("%s: %s=%g validation accuracy %.4f", recipe.label, option, value, scores[value])
    best = max(grid, key=lambda v: scores[v])
    chosen = replace(recipe, options={**recipe.options, option: best})
    note = ", ".join(f"{v:g}: {100 * a:.1f}" for v, a in scores.items())
    chosen = replace(
        chosen,
        note="; ".join(
            filter(None, [recipe.note, f"{option}={best:g} chosen on validation ({note})"])
        ),
    )
    return chosen, scores


def memory_bound(
    stream: ClassIncrementalStream, *, memory_items: int = 1500, seed: int = 0
) -> Result:
    """The offline bound on a memory: after each experience, the joint trainer of
    :func:`~edgecl.bench.cl.joint` on what GDumb's store holds (the same store, budget, seed
    and batches as the ``gdumb`` recipe)."""
    recipe = RECIPES["gdumb"]
    assert recipe.store is not None
    store = replay.create(
        recipe.store,
        max_bytes=store_budget(recipe.store, "int8", stream.latent_shape, memory_items),
        encoding="int8",
        seed=seed,
    )
    held: list[ClassIncrementalStream] = []
    for i, exp in enumerate(stream.experiences()):
        for s in range(0, len(exp), recipe.batch):
            store.add_many(exp.z[s : s + recipe.batch], exp.y[s : s + recipe.batch])
        z, y = store.items()
        held.append(replace(stream, train=Latents(z, y), classes=stream.classes[: i + 1]))
    rows = [joint(h, seed=seed) for h in held]
    result = rows[-1]
    result.label = "joint on gdumb's memory"
    result.accuracies = [r.accuracies[-1] for r in rows]
    result.by_experience = [r.by_experience[-1] for r in rows]
    return result
