"""``edgecl teach`` and ``edgecl predict``: a folder of images to a running daemon.

``teach`` sends the images of a folder with one sub-folder per label (torchvision's
ImageFolder layout) to ``POST /learn`` in batches, each image with an id made of its path,
label and bytes, so that a second run (after an interruption, or with images added)
learns only what the daemon has not learned yet. ``predict`` sends files or folders to
``POST /predict`` and prints one line per file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.commands.client_batches import BatchFailed, Send, batches
from service.commands.client_files import (
    Found,
    ImageFile,
    describe_skipped,
    find,
    interleaved,
)
from service.commands.client_http import DaemonClient, DaemonError, Dropped
from service.commands.client_progress import Progress

URL_ENV = "EDGECL_URL"
TOKEN_ENV = "EDGECL_API_TOKEN"  # the daemon's own setting: the same token works for both


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV, "http://127.0.0.1:8080"),
        help=f"the daemon (default: ${URL_ENV}, else http://127.0.0.1:8080)",
    )
    parser.add_argument(
        "--token", default=None, help=f"bearer token (default: ${TOKEN_ENV}, as the daemon's)"
    )
    parser.add_argument(
        "--batch", type=int, default=16, metavar="N", help="images per request (default 16)"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, metavar="S", help="seconds per request"
    )


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    teach = sub.add_parser(
        "teach",
        help="teach a running daemon the images of a folder (one sub-folder per label)",
        description="Send the images under DIR to the daemon's /learn, labelled by the "
        "sub-folder they are in (DIR/cat/1.jpg is a cat), or all with --label. Each image "
        "goes with an id made of its path, label and bytes: running the command again "
        "learns only what was not learned yet (the daemon remembers the last "
        "EDGECL_RECENT_IDS ids, 10000 by default).",
    )
    teach.add_argument("paths", nargs="+", type=Path, metavar="DIR", help="folder or files")
    teach.add_argument("--label", help="the label of every image given (no sub-folders)")
    _common(teach)
    teach.set_defaults(run=run_teach)

    predict = sub.add_parser(
        "predict",
        help="ask a running daemon what the images in files or folders are",
        description="Print one line per image (folders are searched recursively): path, "
        "label, score, and `unknown` when the image looks like no taught class (else "
        "`known`); --json prints one JSON object per line.",
    )
    predict.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders")
    predict.add_argument("--top-k", type=int, default=1, metavar="K", help="labels per image")
    predict.add_argument("--json", action="store_true", help="JSON lines instead of columns")
    predict.add_argument(
        "--evaluate",
        action="store_true",
        help="the folders have one sub-folder per label: also print the accuracy against them",
    )
    _common(predict)
    predict.set_defaults(run=run_predict)


def _client(args: argparse.Namespace) -> DaemonClient:
    if args.batch < 1:
        raise ValueError(f"--batch must be at least 1 (got {args.batch})")
    if args.timeout <= 0:
        raise ValueError(f"--timeout must be positive (got {args.timeout:g})")
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    return DaemonClient(args.url, token, args.timeout)


def _found(args: argparse.Namespace, label: str | None, by_folder: bool) -> list[ImageFile]:
    found: Found = find(args.paths, label, by_folder=by_folder)
    for line in describe_skipped(found.skipped):
        print(f"edgecl: {line}", file=sys.stderr)  # noqa: T201
    if not found.files:
        where = ", ".join(str(p) for p in args.paths)
        hint = " in sub-folders named after their labels, or give --label" if by_folder else ""
        raise ValueError(f"no images to send in {where} (JPEG, PNG, BMP or WebP files{hint})")
    return found.files


def _failed(exc: BatchFailed) -> bool:
    """The daemon's message, and for a refused body the files it names and all it held
    (then True: the files are to blame)."""
    err = exc.error
    lines = [f"edgecl: error: {err}" + (f" (HTTP {err.status})" if err.status else "")]
    if err.status in (401, 409, 503, 507):  # about the daemon, not about these files
        print(lines[0], file=sys.stderr)  # noqa: T201
        return False
    # The daemon names samples by index ("samples[2].image: ..."): name the files.
    named = " ".join([str(err), *(item.get("loc", "") for item in err.errors)])
    for i in sorted({int(i) for i in re.findall(r"samples\[(\d+)\]", named)}):
        if i < len(exc.files):
            lines.append(f"  samples[{i}] is {exc.files[i].path}")
    if isinstance(err, Dropped):
        size = sum(f.size for f in exc.files)
        lines.append(f"  while receiving {size} bytes: over the daemon's EDGECL_MAX_BODY_BYTES?")
    held = ", ".join(str(f.path) for f in exc.files)
    lines.append(f"  the request held {len(exc.files)} file(s): {held}")
    print("\n".join(lines), file=sys.stderr)  # noqa: T201
    return True


def _drive(
    files: list[ImageFile],
    args: argparse.Namespace,
    send: Send,
    take: Callable[[list[ImageFile], Any], None],
    resume: str = "",
    prints: bool = False,
) -> int:
    """Send every file in batches under a progress bar, handing each reply to ``take``
    (which ``prints`` lines: the bar makes way). The exit status: 0; 1 when the daemon
    failed a request, 2 when a file could not be read (the error printed, and ``resume``,
    how to go on); 130 on Ctrl-C."""
    progress = Progress(len(files), args.command)
    done = 0

    def note(line: str) -> None:
        progress.clear()
        print(f"edgecl: {line}", file=sys.stderr)  # noqa: T201

    try:
        for group, reply in batches(files, args.batch, send, note):
            if prints:
                progress.clear()
            take(group, reply)
            done += len(group)
            progress.advance(len(group))
    except BatchFailed as exc:
        progress.clear()
        if _failed(exc) and resume:
            note(
                f"the {done} images before that request were sent; fix or remove the "
                f"file(s), then run the command again: {resume}"
            )
        return 1
    except DaemonError as exc:
        note(f"error: {exc}")
        if done and resume:
            note(f"{done} of {len(files)} images were sent; run the command again: {resume}")
        return 1
    except ValueError as exc:  # a file could not be read
        note(f"error: {exc}")
        if done and resume:
            note(f"{done} of {len(files)} images were sent; run the command again: {resume}")
        return 2
    except KeyboardInterrupt:
        again = f"; run the command again to go on: {resume}" if resume else ""
        note(f"interrupted after {done} of {len(files)} images{again}")
        return 130
    progress.close()
    return 0


def run_teach(args: argparse.Namespace) -> int:
    client = _client(args)
    files = interleaved(_found(args, args.label, by_folder=True))

    def send(group: list[ImageFile], data: list[bytes]) -> Any:
        samples = [
            {"image": d, "label": f.label, "id": f.sample_id(d)}
            for f, d in zip(group, data, strict=True)
        ]
        return client.post("/learn", {"samples": samples})

    sent: Counter[str] = Counter()
    totals = {"new": 0, "duplicates": 0}
    last: dict[str, Any] = {}

    def take(group: list[ImageFile], reply: dict[str, Any]) -> None:
        sent.update(str(f.label) for f in group)
        totals["new"] += reply["accepted"] - reply["duplicates"]
        totals["duplicates"] += reply["duplicates"]
        last.update(reply)

    resume = "what the daemon has learned is not learned twice"
    code = _drive(files, args, send, take, resume)
    if code:
        return code
    counts = ", ".join(f"{label} {n}" for label, n in sorted(sent.items()))
    print(f"sent {sum(sent.values())} images: {counts}")  # noqa: T201
    print(  # noqa: T201
        f"the daemon took {totals['new']} new and skipped {totals['duplicates']} it already "
        f"had; it knows {last['classes']} classes, model version {last['model_version']}"
    )
    return 0


def _columns(f: ImageFile, p: dict[str, Any]) -> str:
    """path, label, score, known/unknown, then the other top-k labels as label:score."""
    cells = [str(f.path), str(p["label"]), f"{p['score']:.3f}"]
    cells.append("unknown" if p["unknown"] else "known")
    cells += [f"{t['label']}:{t['score']:.3f}" for t in p["top_k"][1:]]
    return "\t".join(cells)


def _json_line(f: ImageFile, p: dict[str, Any], evaluate: bool) -> str:
    line = {"path": str(f.path), "label": p["label"], "score": p["score"]}
    line |= {"unknown": p["unknown"], "novelty": p["novelty"], "top_k": p["top_k"]}
    if evaluate and f.label is not None:
        line["truth"] = f.label
    return json.dumps(line)


def run_predict(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.top_k < 1:
        raise ValueError(f"--top-k must be at least 1 (got {args.top_k})")
    files = _found(args, None, by_folder=False)
    if args.evaluate and not any(f.label is not None for f in files):
        raise ValueError(
            "--evaluate needs folders with one sub-folder per label (DIR/cat/1.jpg is a cat)"
        )

    def send(group: list[ImageFile], data: list[bytes]) -> Any:
        samples = [{"image": d} for d in data]
        return client.post("/predict", {"samples": samples, "top_k": args.top_k})

    scored: list[tuple[ImageFile, str]] = []

    def take(group: list[ImageFile], reply: dict[str, Any]) -> None:
        for f, p in zip(group, reply["predictions"], strict=True):
            print(_json_line(f, p, args.evaluate) if args.json else _columns(f, p))  # noqa: T201
            scored.append((f, str(p["label"])))
        sys.stdout.flush()

    try:
        code = _drive(files, args, send, take, prints=True)
    except BrokenPipeError:  # `edgecl predict photos/ | head`: the reader has enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if code:
        return code
    if args.evaluate:
        _report(scored, args.json)
    return 0


def _report(scored: list[tuple[ImageFile, str]], as_json: bool) -> None:
    """Accuracy against the folder names, over all and per label."""
    images: Counter[str] = Counter()
    right: Counter[str] = Counter()
    for f, label in scored:
        if f.label is not None:
            images[f.label] += 1
            right[f.label] += label == f.label
    total, correct = sum(images.values()), sum(right.values())
    per_label = {
        name: {"accuracy": right[name] / n, "correct": right[name], "images": n}
        for name, n in sorted(images.items())
    }
    if as_json:
        summary = {"accuracy": correct / total, "correct": correct, "images": total}
        print(json.dumps({**summary, "per_label": per_label}))  # noqa: T201
        return
    print(f"accuracy {correct / total:.3f} ({correct}/{total} images)")  # noqa: T201
    for name, row in per_label.items():
        print(f"  {name}\t{row['accuracy']:.3f} ({row['correct']}/{row['images']})")  # noqa: T201
