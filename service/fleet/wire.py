"""Contributions as Flower messages: the arrays as Flower ``Parameters`` (NumPy ``.npy``
bytes), the header (kind, strategy, label names) as a string in the config or metrics."""

from __future__ import annotations

import hashlib

from flwr.common import Parameters, ndarrays_to_parameters, parameters_to_ndarrays

from edgecl.fleet import Contribution, from_arrays, to_arrays

#: The keys of the fleet's config and metrics entries.
HEADER, FLEET, DEVICE, ROUND = "edgecl_header", "edgecl_fleet", "edgecl_device", "edgecl_round"
#: A device that learned nothing since the last merge it applied sends no arrays.
UNCHANGED = "edgecl_unchanged"
#: The merge's digest: a device that applied this very merge is sent no arrays again.
DIGEST = "edgecl_digest"


def pack(part: Contribution) -> tuple[str, Parameters]:
    header, arrays = to_arrays(part)
    return header, ndarrays_to_parameters(arrays)


def unpack(header: str, parameters: Parameters) -> Contribution:
    """``ValueError`` for anything malformed."""
    return from_arrays(header, parameters_to_ndarrays(parameters))


def size(header: str, parameters: Parameters) -> int:
    """Bytes of a message's payload: the arrays as sent, and the header."""
    return sum(len(t) for t in parameters.tensors) + len(header.encode())


def digest(header: str, parameters: Parameters) -> str:
    """What a merge is, in 64 hex digits."""
    h = hashlib.sha256(header.encode())
    for tensor in parameters.tensors:
        h.update(tensor)
    return h.hexdigest()


def empty() -> Parameters:
    return Parameters(tensors=[], tensor_type="numpy.ndarray")
