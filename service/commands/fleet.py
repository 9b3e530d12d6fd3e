"""``edgecl fleet server``: the Flower server the daemons of a fleet join (``fleet`` extra)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("fleet", help="share what devices learn through Flower")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    server = actions.add_parser(
        "server",
        help="run the fleet's Flower server",
        description="Run a Flower server whose rounds merge what the fleet's daemons learned "
        "(slda/ncm: their statistics, exactly; SGD heads: weights averaged per class by "
        "samples, classes aligned by label name). Daemons join with fleet_enabled: true and "
        "fleet_server pointing here. Each finished round is printed as one JSON line.",
    )
    server.add_argument("--address", default="0.0.0.0:9092", help="host:port to listen on")
    server.add_argument("--fleet-id", default="default", help="the fleet daemons must name")
    server.add_argument(
        "--min-devices", type=int, default=1, help="devices to wait for before the first round"
    )
    server.add_argument("--rounds", type=int, default=1_000_000, help="rounds to run, then stop")
    server.add_argument("--round-interval", type=float, default=60.0, help="seconds between rounds")
    server.add_argument(
        "--round-timeout",
        type=float,
        default=120.0,
        help="seconds a round waits for devices; those later are left out of it",
    )
    server.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="keep what each device sent in FILE, so a restarted server still merges devices "
        "that are away (default: in memory only)",
    )
    for name, what in (("ca", "CA"), ("cert", "server certificate"), ("key", "its key")):
        server.add_argument(f"--tls-{name}", type=Path, help=f"TLS: {what} (PEM; all three)")
    server.set_defaults(run=run_server)


def run_server(args: argparse.Namespace) -> int:
    tls = (args.tls_ca, args.tls_cert, args.tls_key)
    if any(tls) and not all(tls):
        raise ValueError("TLS needs --tls-ca, --tls-cert and --tls-key together")
    for number, name in ((args.min_devices, "--min-devices"), (args.rounds, "--rounds")):
        if number < 1:
            raise ValueError(f"{name} must be at least 1, got {number}")
    if args.round_interval < 0 or args.round_timeout <= 0:
        raise ValueError("--round-interval must be >= 0 and --round-timeout > 0")
    import service.fleet  # noqa: F401  first: it turns Flower's telemetry off

    try:
        from flwr.compat.server.app import start_server
        from flwr.server import ServerConfig

        from service.fleet.server import FleetStrategy
    except ImportError as exc:
        raise ValueError(f"the fleet needs Flower: pip install 'edgecl[fleet]' ({exc})") from None
    certificates = None
    if all(tls):
        certificates = tuple(Path(p).read_bytes() for p in tls)
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    strategy = FleetStrategy(args.fleet_id, args.min_devices, args.round_interval, sys.stdout)
    if args.state is not None:
        strategy.keep(args.state)
    start_server(
        server_address=args.address,
        config=ServerConfig(num_rounds=args.rounds, round_timeout=args.round_timeout),
        strategy=strategy,
        certificates=certificates,  # type: ignore[arg-type]
    )
    return 0
