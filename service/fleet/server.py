"""The server's strategy: every round each connected device sends what it learned itself,
the strategy merges (:class:`edgecl.fleet.Aggregator`) and sends the merge back to the
devices that took part, which apply it and answer once it is durable."""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from flwr.common import EvaluateIns, EvaluateRes, FitIns, FitRes, Parameters, Scalar
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy

from edgecl import persistence
from edgecl.fleet import Aggregator
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
)  # fmt: skip

log = logging.getLogger("edgecl.fleet")


@dataclass
class RoundReport:
    round: int
    devices: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    failures: int = 0
    applied: list[str] = field(default_factory=list)
    bytes_sent: dict[str, int] = field(default_factory=dict)  # per device, to the server
    bytes_merged: int = 0  # the merge
    bytes_back: dict[str, int] = field(default_factory=dict)  # per device: 0 if it had it
    classes: list[str] = field(default_factory=list)
    origins: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0


class FleetStrategy(Strategy):
    """Rounds every ``interval_s`` (the first once ``min_devices`` are connected); a device
    of another fleet id, or whose head does not fit the fleet's, is left out of the merge.
    Each finished round is written to ``out`` as one JSON line."""

    def __init__(
        self, fleet_id: str, min_devices: int = 1, interval_s: float = 0.0,
        out: TextIO | None = None,
    ) -> None:  # fmt: skip
        self.fleet_id, self.min_devices, self.interval_s = fleet_id, min_devices, interval_s
        self.out = out if out is not None else sys.stdout
        self.aggregator = Aggregator()
        self.state_path: Path | None = None
        self.report = RoundReport(0)
        self._started = 0.0
        self._sent: list[ClientProxy] = []
        self._header = ""
        self._digest = ""
        # The digest of the merge each device last said it applied: sent again only if new.
        self._applied: dict[str, str] = {}
        self._devices: dict[str, str] = {}  # proxy cid -> device id, for this round

    def keep(self, path: Path) -> None:
        """Keep the devices' entries in ``path`` (loaded now if it exists, saved atomically
        after every merge), so a restarted server still merges devices absent from its
        first rounds."""
        if path.exists():
            self.aggregator = Aggregator.from_state(persistence.load(path))
        self.state_path = path

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return empty()  # the fleet starts from nothing: no device is asked for a model

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        if server_round > 1 and self.interval_s:
            time.sleep(self.interval_s)
        client_manager.wait_for(self.min_devices if server_round == 1 else 1, timeout=86400)
        self._started, self.report = time.monotonic(), RoundReport(server_round)
        config: dict[str, Scalar] = {FLEET: self.fleet_id, ROUND: server_round}
        clients = client_manager.sample(max(client_manager.num_available(), 1))
        return [(c, FitIns(empty(), dict(config))) for c in clients]

    def aggregate_fit(
        self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
        failures: list[Any],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:  # fmt: skip
        report, self._sent, fresh = self.report, [], False
        report.failures = len(failures)
        for proxy, res in results:
            device = str(res.metrics.get(DEVICE, proxy.cid))
            header = str(res.metrics.get(HEADER, ""))
            try:
                if res.metrics.get(FLEET) != self.fleet_id:
                    raise ValueError(f"fleet {res.metrics.get(FLEET)!r} is not {self.fleet_id!r}")
                if not res.metrics.get(UNCHANGED):
                    self.aggregator.update(device, unpack(header, res.parameters))
                    fresh = True
                elif device not in self.aggregator.parts:  # e.g. this server restarted
                    raise ValueError("sent nothing new, and this server holds nothing of it")
            except ValueError as exc:
                log.warning("device %s left out of round %d: %s", device, server_round, exc)
                report.refused[device] = str(exc)
                continue
            report.devices.append(device)
            report.bytes_sent[device] = size(header, res.parameters)
            self._sent.append(proxy)
            self._devices[proxy.cid] = device
        merged = self.aggregator.merged()
        if merged is None:
            return None, {}
        if self.state_path is not None and fresh:
            self.aggregator.round = server_round
            persistence.save(self.state_path, self.aggregator.state_dict())
        self._header, parameters = pack(merged)
        self._digest = digest(self._header, parameters)
        report.bytes_merged = size(self._header, parameters)
        report.classes = [str(label) for label in merged.labels]
        report.origins = self.aggregator.origins()
        return parameters, {}

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        config: dict[str, Scalar] = {
            FLEET: self.fleet_id, ROUND: server_round, HEADER: self._header,
            DIGEST: self._digest,
        }  # fmt: skip
        if not self._sent:  # nothing to send back: the round ends here
            self.finish()
            return []

        def arrays(proxy: ClientProxy) -> Parameters:
            device = self._devices.get(proxy.cid, "")
            fresh = self._applied.get(device) != self._digest
            self.report.bytes_back[device] = size(self._header, parameters) if fresh else 0
            return parameters if fresh else empty()

        return [(proxy, EvaluateIns(arrays(proxy), dict(config))) for proxy in self._sent]

    def aggregate_evaluate(
        self, server_round: int, results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[Any],
    ) -> tuple[float | None, dict[str, Scalar]]:  # fmt: skip
        report = self.report
        report.applied = sorted(
            str(res.metrics.get(DEVICE, proxy.cid)) for proxy, res in results
            if res.metrics.get("applied")
        )  # fmt: skip
        for proxy, res in results:  # a device that did not apply it is sent it whole next time
            device = str(res.metrics.get(DEVICE, proxy.cid))
            if res.metrics.get("applied"):
                self._applied[device] = self._digest
            else:
                self._applied.pop(device, None)
        report.failures += len(failures)
        self.finish()
        return None, {}

    def finish(self) -> None:
        report = self.report
        report.seconds = time.monotonic() - self._started
        self.out.write(json.dumps({"event": "round", **report.__dict__}) + "\n")
        self.out.flush()

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        return None
