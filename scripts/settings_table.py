"""The daemon's environment variables as a Markdown table, generated from
``service/settings.py`` (and the ``ENV`` lines of the Dockerfile), so the README cannot drift.

    python scripts/settings_table.py                     # print the table
    python scripts/settings_table.py --check README.md   # exit 1 when README's table differs
    python scripts/settings_table.py --write README.md   # replace README's table in place

In a file the table sits between ``<!-- settings-table:start -->`` and
``<!-- settings-table:end -->``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.settings import Settings  # noqa: E402
from service.settings_groups import FLAT_NAMES, GROUPS  # noqa: E402

START = "<!-- settings-table:start -->"
END = "<!-- settings-table:end -->"
PREFIX = "EDGECL_"
NESTED = "__"

#: Used where a field has no ``Field(description=...)`` of its own; keyed by YAML path.
DESCRIPTIONS: dict[str, str] = {
    "host": "Address the HTTP server listens on; the image sets `0.0.0.0`.",
    "port": "HTTP port.",
    "data_dir": "State directory: WAL, checkpoints and (by default) the backbone.",
    "log_level": "Log level of the daemon and of uvicorn; `debug` adds access logs.",
    "api_token": "Bearer token required on every route but `/health/*`; unset: no auth.",
    "max_body_bytes": "Larger request bodies are refused with 413.",
    "max_samples_per_request": "Most samples one `/learn` or `/predict` request may carry.",
    "backbone": "`onnx`: the int8 image backbone; `identity`: inputs are latent vectors.",
    "backbone_dir": "Folder of backbone builds; unset: `<data_dir>/backbone`. A missing "
    "default (`pooled`) build is copied there from the package on first start; other cuts are "
    "built there (needs torch); the image copies its own into a new volume.",
    "latent_dim": "Vector length for the `identity` backbone.",
    "strategy.name": "Head strategy: {strategies}.",
    "strategy.options": "Keyword options of the strategy, as JSON.",
    "store.kind": "Replay store: `paper` (the one the strategy's paper uses: `class_balanced` "
    "for gdumb, `exstream` for exstream, `latent_replay` for ar1 and latent_replay, none for "
    "the others), {stores}; none: `EDGECL_STORE='{\"kind\": null}'` or `kind: null` in YAML.",
    "store.max_bytes": "Byte budget of the replay store; it never holds more. Unset: the "
    "paper's 1500 latents for `paper`, else 16 MiB.",
    "store.encoding": "How stored samples are held: {encodings} (`lz4`: raw images, "
    "embedded again on replay; survives a backbone change with `edgecl store reembed`).",
    "store.options": "Further keyword options of the store, as JSON.",
    "seed": "Seed of the learner's and the store's random generators.",
    "prequential_window": "Samples in the sliding window of prequential accuracy.",
    "queue_size": "Learn requests the writer queue holds before answering 503.",
    "max_batch": "Most samples the writer learns in one step.",
    "max_wait_ms": "How long the writer waits to fill a batch with learn requests still "
    "being embedded (never for a lone one).",
    "recent_ids": "Sample ids remembered so a retried request is not learned twice.",
    "retry_after_s": "`Retry-After` seconds sent with a 503.",
    "wal_fsync": "`always`: fsync each WAL write before answering; `group`: batch fsyncs.",
    "wal_group_ms": "Longest delay of a grouped WAL fsync.",
    "checkpoint_wal_ratio": "Checkpoint once the WAL since the last checkpoint holds this "
    "many times that checkpoint's bytes (flash writes stay near the WAL's own).",
    "checkpoint_min_wal_bytes": "...and at least this many WAL bytes (bounds a restart's replay).",
    "checkpoint_every_samples": "Also checkpoint after this many learned samples (unset: off).",
    "checkpoint_every_s": "Also checkpoint this long after a change (unset: off).",
    "checkpoint_on_stop": "Checkpoint on every stop, due or not (a shorter replay at the next "
    "start, one more checkpoint's flash writes per stop).",
    "checkpoint_keep": "Checkpoints kept on disk.",
    "probe_rescore_s": "While learning, /stats shows the probe at most this many seconds stale.",
    "shutdown_timeout_s": "On SIGTERM: time to drain the queue (and write a checkpoint if one "
    "is due; the WAL keeps the rest).",
}


class Row(typing.NamedTuple):
    """One variable of the table.

    >>> Row("EDGECL_PORT", "port", "8080", "", "integer", "HTTP port.").cells()[0]
    '`EDGECL_PORT`'
    """

    env: str
    path: str
    default: str
    image: str
    values: str
    description: str

    def cells(self) -> list[str]:
        return [f"`{self.env}`", self.default, self.image, self.values, self.description]


def _numbers(metadata: Sequence[Any]) -> str:
    bounds = []
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            bounds.append(f"≥ {item.ge}")
        elif isinstance(item, annotated_types.Gt):
            bounds.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Le):
            bounds.append(f"≤ {item.le}")
        elif isinstance(item, annotated_types.Lt):
            bounds.append(f"< {item.lt}")
    return " " + ", ".join(bounds) if bounds else ""


def describe_type(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    """What values a variable takes.

    >>> describe_type(typing.Literal["a", "b"])
    '`a`, `b`'
    >>> describe_type(int, [annotated_types.Ge(1)])
    'integer ≥ 1'
    """
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return describe_type(args[0], metadata)
    if origin is typing.Literal:
        return ", ".join(f"`{a}`" for a in args)
    if annotation is bool:
        return "`true`, `false`"
    if annotation is int:
        return "integer" + _numbers(metadata)
    if annotation is float:
        return "number" + _numbers(metadata)
    if annotation is Path:
        return "path"
    if annotation is SecretStr:
        return "secret string"
    if annotation is str:
        return "string"
    if origin is dict or annotation is dict:
        return "JSON object"
    if origin is list:
        return "JSON list of " + describe_type(args[0]) + "s" if args else "JSON list"
    return str(annotation)


def describe_default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (dict, list)):
        return f"`{json.dumps(value)}`"
    text = f"`{value}`"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1 << 20:
        if value % (1 << 20) == 0:
            text += f" ({value >> 20} MiB)"
    return text


def image_env(dockerfile: Path) -> dict[str, str]:
    """``EDGECL_*`` values that the Dockerfile's ``ENV`` instructions set."""
    if not dockerfile.is_file():
        return {}
    text = dockerfile.read_text(encoding="utf-8").replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip().upper().startswith("ENV "):
            for name, value in re.findall(r"(EDGECL_\w+)=(\S+)", line):
                found[name] = value.strip("\"'")
    return found


def _fields(model: type[BaseModel], env: str, path: str) -> Iterator[tuple[str, str, FieldInfo]]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if model is Settings and name in GROUPS:
            # A group's settings keep their flat names: EDGECL_MQTT_HOST, mqtt_host.
            for inner, inner_field in GROUPS[name].model_fields.items():
                flat = FLAT_NAMES[(name, inner)]
                yield f"{env}{flat.upper()}", f"{path}{flat}", inner_field
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _fields(annotation, f"{env}{name.upper()}{NESTED}", f"{path}{name}.")
        else:
            yield f"{env}{name.upper()}", f"{path}{name}", field


def rows(dockerfile: Path = ROOT / "Dockerfile") -> list[Row]:
    """Every variable ``Settings`` reads, in declaration order.

    >>> [r.env for r in rows()][:2]
    ['EDGECL_HOST', 'EDGECL_PORT']
    """
    from edgecl import replay, strategies
    from edgecl.replay.compress import ENCODINGS

    names = {
        "strategies": ", ".join(f"`{n}`" for n in strategies.names()),
        "stores": ", ".join(f"`{n}`" for n in replay.names()),
        "encodings": ", ".join(f"`{n}`" for n in ENCODINGS),
    }
    image = image_env(dockerfile)
    out = []
    for env, path, field in _fields(Settings, PREFIX, ""):
        description = field.description or DESCRIPTIONS.get(path, "")
        for key, value in names.items():
            description = description.replace("{" + key + "}", value)
        out.append(
            Row(
                env=env,
                path=path,
                default=describe_default(field),
                image=f"`{image[env]}`" if env in image else "",
                values=describe_type(field.annotation, field.metadata),
                description=description,
            )
        )
    return out


def table(items: Sequence[Row]) -> str:
    head = ["Variable", "Default", "In the image", "Values", "What it does"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in items]
    return "\n".join(lines) + "\n"


def _replace(text: str, new_table: str) -> str:
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {START} ... {END} markers")
    return text[: start + len(START)] + "\n" + new_table + text[end:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", type=Path, metavar="FILE", help="compare FILE's table")
    group.add_argument("--write", type=Path, metavar="FILE", help="rewrite FILE's table")
    args = parser.parse_args(argv)
    items = rows()
    missing = [r.env for r in items if not r.description]
    if missing:
        sys.stderr.write(
            f"no description for {', '.join(missing)}: add Field(description=...) in "
            "service/settings.py or an entry in DESCRIPTIONS in scripts/settings_table.py\n"
        )
        return 1
    new_table = table(items)
    target: Path | None = args.check or args.write
    if target is None:
        sys.stdout.write(new_table)
        return 0
    text = target.read_text(encoding="utf-8")
    try:
        updated = _replace(text, new_table)
    except ValueError as exc:
        sys.stderr.write(f"{target}: {exc}\n")
        return 1
    if args.write:
        target.write_text(updated, encoding="utf-8")
        return 0
    if updated != text:
        sys.stderr.write(
            f"{target}: the settings table is out of date; run "
            f"python scripts/settings_table.py --write {target}\n"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
