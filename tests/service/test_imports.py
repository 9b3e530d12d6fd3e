"""The observability package is in no import cycle and reads no runtime internals, counting
imports under ``if TYPE_CHECKING:`` too: it gets its figures through ``StatsSource``."""

from __future__ import annotations

import grimp

PACKAGE = "service.observability"


def graph() -> grimp.ImportGraph:
    return grimp.build_graph("service", cache_dir=None)  # TYPE_CHECKING imports included


def test_observability_is_in_no_import_cycle() -> None:
    g = graph()
    for module in sorted({PACKAGE, *g.find_descendants(PACKAGE)}):
        # Imported by ``module`` (even indirectly) and importing it back: a cycle.
        for other in sorted(g.find_upstream_modules(module) & g.find_downstream_modules(module)):
            there, back = g.find_shortest_chain(module, other), g.find_shortest_chain(other, module)
            raise AssertionError(f"import cycle: {there} and back: {back}")


def test_observability_does_not_import_the_runtime_or_the_writer() -> None:
    g = graph()
    for inner in ("service.runtime", "service.writer"):
        chain = g.find_shortest_chain(PACKAGE, inner, as_packages=True)
        assert chain is None, chain
