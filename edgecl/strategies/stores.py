"""The replay memory each strategy's paper pairs it with, and its default budget.

A strategy brings its paper's memory unless told otherwise: the benchmarks build it, and
the daemon uses it when its settings name no store. A strategy class may declare its own
with a ``paper_store`` attribute (a :class:`PaperStore`); the built-in ones are below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The default budget, in items: the 1500 latents of AR1's CORe50 runs (Pellegrini et al.
#: 2020), also the memory of ``edgecl bench cl``. GDumb and ExStream sweep theirs.
ITEMS = 1500


@dataclass(frozen=True)
class PaperStore:
    """A store kind (None: the paper keeps no memory), its budget in items and options.

    >>> PaperStore("class_balanced").max_bytes("int8", (1280,))
    1938000
    """

    kind: str | None
    items: int = ITEMS
    options: dict[str, Any] = field(default_factory=dict)

    def max_bytes(self, encoding: str, latent_shape: tuple[int, ...]) -> int:
        """The byte budget that holds ``items`` latents of ``latent_shape`` (``pq``: the
        bytes of that many int8 latents)."""
        from edgecl import replay
        from edgecl.replay.compress import item_nbytes

        if self.kind is None:
            return 0
        extra = int(getattr(replay.create(self.kind, max_bytes=1 << 30), "extra_nbytes", 0))
        per_item = item_nbytes("int8" if encoding == "pq" else encoding, latent_shape)
        return self.items * (per_item + extra)


NONE = PaperStore(None, 0)

PAPER_STORES: dict[str, PaperStore] = {
    "slda": NONE,  # running class means and a covariance: no samples kept
    "ncm": NONE,
    "cwr_star": NONE,  # CWR* keeps consolidated weights only
    "naive": NONE,
    "latent_replay": PaperStore("latent_replay"),  # Pellegrini et al. 2020
    "ar1": PaperStore("latent_replay"),  # AR1* with latent replay, the same paper
    "exstream": PaperStore("exstream"),  # per-class buffers merging nearest prototypes
    "gdumb": PaperStore("class_balanced"),  # GDumb's greedy class-balanced sampler
    "ensemble": NONE,  # one head per experience, no samples
    "lwf": NONE,  # the previous head is the teacher, on new data only
    "ewc": NONE,  # a Fisher and anchor per parameter
    "si": NONE,  # importances and anchor per parameter
}
