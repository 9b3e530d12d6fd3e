"""How many CPUs this process may use, and which instruction sets they have."""

from __future__ import annotations

import functools
import os
from pathlib import Path


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity (a container's cpuset, ``taskset``)
    where the OS has one, else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as ``/proc/cpuinfo`` lists them (``flags`` on x86,
    ``Features`` on Arm); empty where it cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    have: set[str] = set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            have.update(value.split())
    return frozenset(have)
