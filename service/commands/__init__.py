"""Subcommands of ``edgecl``; each module has ``add_parser(subparsers)`` that sets ``run``."""

from __future__ import annotations

from types import ModuleType

from service.commands import backbone, bench, client, demo, fleet, serve, store

COMMANDS: list[ModuleType] = [demo, serve, backbone, bench, store, client, fleet]
