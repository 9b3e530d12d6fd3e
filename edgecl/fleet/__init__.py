"""A fleet of devices that learn together: what a device sends (:class:`Contribution`),
how a server merges them (:func:`merge`), and how a device takes the merge in without
losing what it learned meanwhile (:mod:`edgecl.fleet.device`). Pure NumPy: the transport
(Flower) lives in the daemon.

Only head parameters or statistics are ever in a contribution, never samples or latents.
"""

from edgecl.fleet.contribution import Contribution, from_arrays, to_arrays
from edgecl.fleet.device import FleetMemory, HeadSnapshot, apply_merged, contribution, snapshot
from edgecl.fleet.merge import Aggregator, merge
from edgecl.fleet.statistics import supported

__all__ = [
    "Aggregator",
    "Contribution",
    "FleetMemory",
    "HeadSnapshot",
    "apply_merged",
    "contribution",
    "from_arrays",
    "merge",
    "snapshot",
    "supported",
    "to_arrays",
]
