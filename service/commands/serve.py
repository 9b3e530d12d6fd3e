"""``edgecl serve``: run the daemon (uvicorn), or ``--validate-config FILE`` and exit."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from service.settings import Settings, load_settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "serve",
        help="run the learning daemon",
        description="Run the HTTP daemon. Settings come from --config (YAML), EDGECL_* "
        "environment variables and these flags, later ones winning.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML settings file (a commented one to start from: deploy/edgecl.example.yaml "
        "in the source tree)",
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080)")
    parser.add_argument("--data-dir", type=Path, help="state directory (default ./edgecl-data)")
    parser.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    from edgecl import strategies

    parser.add_argument(
        "--strategy",
        choices=strategies.names(),
        metavar="NAME",
        help="head strategy, one of: %(choices)s (default slda)",
    )
    parser.add_argument(
        "--strategy-option",
        action="append",
        type=_option,
        default=[],
        metavar="KEY=VALUE",
        help="a strategy option (VALUE read as YAML: 0.5, true, text); may be repeated",
    )
    parser.add_argument(
        "--validate-config",
        type=Path,
        metavar="FILE",
        help="check FILE (with the environment) and exit: 0 when valid",
    )
    parser.set_defaults(run=run)


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        return key.strip(), value


def check(settings: Settings) -> None:
    """Refuse an unauthenticated API open to the network, and build the strategy and store
    once, so bad options fail here and not at start."""
    from edgecl import replay, strategies

    problem = settings.exposure_problem()
    if problem is not None:
        raise ValueError(problem)

    strategies.create(settings.strategy.name, **settings.strategy.options)
    # The budget of a paper store depends on the latent shape; any shape checks the options.
    kind, options = settings.store.resolve(settings.strategy.name, (settings.latent_dim,))
    if kind is not None:
        replay.create(kind, **options)


def run(args: argparse.Namespace) -> int:
    if args.validate_config is not None:
        check(load_settings(args.validate_config))
        sys.stdout.write(f"{args.validate_config}: valid\n")
        return 0
    strategy: dict[str, Any] = {}
    if args.strategy is not None:
        strategy["name"] = args.strategy
    if args.strategy_option:
        strategy["options"] = dict(args.strategy_option)
    settings = load_settings(
        args.config,
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        log_level=args.log_level,
        strategy=strategy or None,
    )
    check(settings)
    return serve(settings)


def serve(settings: Settings) -> int:
    import uvicorn

    from service.app import create_app
    from service.bootstrap import build_runtime
    from service.malloc_tuning import map_large_buffers
    from service.server import ListenError, listen, uvicorn_config

    map_large_buffers()  # before the runtime allocates anything large
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        sock = listen(settings)
    except ListenError as exc:
        # Not exit 2: a port still held by a stopping daemon may be free at a restart.
        sys.stderr.write(f"edgecl: error: {exc}\n")
        return 3
    runtime = build_runtime(settings)
    # Before uvicorn: a state that cannot be restored is a one-sentence error and exit 2
    # (service/__main__.py), not a traceback; a signal meanwhile simply ends the process.
    runtime.restore()
    app = create_app(settings, runtime)
    # What is alive now (imports, the restored state, the app) stays: out of the cyclic
    # collector's reach, a full collection scans only later objects instead of stopping
    # every thread for tens of milliseconds (BENCHMARKS.md).
    gc.collect()
    gc.freeze()
    server = uvicorn.Server(uvicorn_config(app, settings))
    received: list[int] = []

    def note(sig: int, frame: FrameType | None) -> None:
        received.append(sig)

    # uvicorn re-raises the signal that stopped it with the previous handler; ours makes a
    # drained, checkpointed shutdown exit 0 instead of dying by SIGTERM.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, note)
    server.run(sockets=[sock])
    return 0 if server.started else 1
