"""The daemon's Flower client: a thread that joins the fleet's rounds.

A round's ``fit`` reads a snapshot of the head under the learner's lock and sends what this
device learned itself (head statistics or weights, never samples or latents). Its
``evaluate`` carries the merge back: it is applied on the writer thread as one head swap
(:meth:`service.runtime.LearnerRuntime.change`), checkpointed with the fleet's memory
(:class:`edgecl.fleet.FleetMemory`) before the device answers that it applied it. A
device killed in between restarts from its last checkpoint, sends again next round (the
server replaces its entry: nothing is counted twice) and gets the merge then.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flwr.client import Client
from flwr.common import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    Scalar,
    Status,
)

from edgecl.fleet import (
    Contribution,
    FleetMemory,
    HeadSnapshot,
    apply_merged,
    contribution,
    supported,
)
from edgecl.fleet import snapshot as head_snapshot
from service.fleet.wire import (
    DEVICE,
    DIGEST,
    FLEET,
    HEADER,
    ROUND,
    UNCHANGED,
    digest,
    empty,
    pack,
    size,
    unpack,
)
from service.runtime import LearnerRuntime
from service.settings_fleet import FleetSettings

log = logging.getLogger("edgecl.fleet")

#: Where the fleet's memory sits in a checkpoint.
CHECKPOINT_KEY = "fleet"


def device_id(settings: FleetSettings, data_dir: Path) -> str:
    """The configured id, or one made up once and kept in the data dir."""
    if settings.device_id:
        return settings.device_id
    path = data_dir / "fleet-device-id"
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        made = f"edgecl-{secrets.token_hex(6)}"
        path.write_text(made + "\n", encoding="utf-8")
        return made


@dataclass
class _Pending:
    round: int
    snap: HeadSnapshot
    sent: Contribution


class FleetClient(Client):
    """The Flower client of one daemon; :meth:`start` runs it in a thread."""

    def __init__(self, runtime: LearnerRuntime, settings: FleetSettings, data_dir: Path) -> None:
        strategy = runtime.learner.strategy
        problem = supported(strategy.name, strategy.state_dict())
        if problem is not None:
            raise ValueError(f"fleet_enabled: {problem} (use slda, ncm or an SGD head)")
        self.runtime, self.settings = runtime, settings
        self.device = device_id(settings, data_dir)
        self.memory = FleetMemory()
        self.pending: _Pending | None = None
        self.last: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------
    def attach(self) -> None:
        """Load the memory saved with the newest checkpoint and have every checkpoint keep
        it (call before the runtime starts, so no checkpoint is written without it)."""
        saved = self.runtime.latest_checkpoint()
        self.memory = FleetMemory.from_state(None if saved is None else saved.get(CHECKPOINT_KEY))
        self.runtime.writer.attached[CHECKPOINT_KEY] = lambda: self.memory.state_dict()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="edgecl-fleet", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop joining rounds (a round in flight is not applied once the runtime stops)."""
        self._stop.set()

    def _run(self) -> None:
        from flwr.compat.client.app import start_client

        ca = self.settings.tls_ca
        root = ca.read_bytes() if ca is not None else None
        failures = 0
        while not self._stop.is_set():
            try:
                start_client(
                    server_address=self.settings.server,
                    client=self,
                    insecure=not (self.settings.tls or root is not None),
                    root_certificates=root,
                )
                failures = 0
            except Exception as exc:  # the server went away: join again later
                failures += 1
                # One line per failure; the traceback only the first time in a row.
                log.warning(
                    "fleet connection to %s failed (%s); trying again in %s s",
                    self.settings.server, exc, self.settings.reconnect_s,
                    exc_info=failures == 1,
                )  # fmt: skip
            self._stop.wait(self.settings.reconnect_s)

    # -- Flower -----------------------------------------------------------------------
    def get_parameters(self, ins: GetParametersIns) -> GetParametersRes:
        return GetParametersRes(Status(Code.OK, ""), empty())

    def fit(self, ins: FitIns) -> FitRes:
        self._check_fleet(ins.config)
        with self.runtime.exclusive() as learner:
            snap = head_snapshot(learner)
        part = contribution(snap, self.memory)  # outside the lock: learning goes on
        round_ = int(ins.config.get(ROUND, 0))
        # Nothing learned since the last merge applied (and that round finished here): the
        # server's entry for this device is still right.
        unchanged = self.pending is None and self.memory.holds(snap)
        self.pending = _Pending(round_, snap, part)
        header, parameters = ("", empty()) if unchanged else pack(part)
        self.last.update(sent_round=round_, bytes_sent=size(header, parameters))
        metrics: dict[str, Scalar] = {
            HEADER: header, DEVICE: self.device, FLEET: self.settings.id,
            UNCHANGED: int(unchanged),
        }  # fmt: skip
        return FitRes(Status(Code.OK, ""), parameters, int(part.counts.sum()), dict(metrics))

    def evaluate(self, ins: EvaluateIns) -> EvaluateRes:
        self._check_fleet(ins.config)
        round_, pending = int(ins.config.get(ROUND, 0)), self.pending
        applied = pending is not None and pending.round == round_
        if pending is not None and applied and not ins.parameters.tensors:
            # The server sends no arrays for the merge this device applied last: nothing
            # to do if that is still what the head holds (else it says so, and is sent all).
            applied = ins.config.get(DIGEST) == self.memory.digest and self.memory.holds(
                pending.snap
            )
            if applied:
                self.pending = None
                self.last.update(round=round_, at=time.time())
        elif pending is not None and applied:
            header = str(ins.config[HEADER])
            merged, sha = unpack(header, ins.parameters), digest(header, ins.parameters)

            def change() -> None:
                learner = self.runtime.learner
                memory = apply_merged(
                    learner, merged, pending.snap, pending.sent, self.memory, round_
                )
                self.memory = replace(memory, digest=sha)

            same = sha == self.memory.digest and self.memory.holds(pending.snap)
            if not same:  # else the head is the merge already: no swap, no checkpoint
                self.runtime.change(change).result()  # durable once this returns
            self.pending = None
            self.last.update(
                round=round_,
                at=time.time(),
                classes=[str(label) for label in merged.labels],
                from_elsewhere=[str(label) for label in self.memory.from_elsewhere],
            )
        metrics: dict[str, Scalar] = {DEVICE: self.device, "applied": int(applied)}
        return EvaluateRes(Status(Code.OK, ""), 0.0, 0, dict(metrics))

    def _check_fleet(self, config: dict[str, Any]) -> None:
        if config.get(FLEET) != self.settings.id:
            raise ValueError(f"the server runs fleet {config.get(FLEET)!r}, not ours")

    # -- /stats -----------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        return {
            "server": self.settings.server,
            "fleet_id": self.settings.id,
            "device_id": self.device,
            "last_round": self.last.get("round", self.memory.round or None),
            "last_round_at": self.last.get("at"),
            "bytes_sent_last_round": self.last.get("bytes_sent"),
            "classes": self.last.get("classes", []),
            "from_elsewhere": [str(x) for x in self.memory.from_elsewhere],
        }
