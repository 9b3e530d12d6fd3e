"""multipart/form-data bodies (``curl -F file=@x.png -F label=sneaker``) as the JSON shape,
as strict as JSON: a field the route does not take is refused by name, not ignored (a
misspelt ``topk`` would otherwise leave ``top_k`` at its default without a word)."""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

from starlette.datastructures import FormData, UploadFile

from service.bodies import BodyError
from service.schemas import ErrorItem

#: The form fields each route takes; ``file`` carries the images.
LEARN_FIELDS = ("file", "label", "id", "task")
PREDICT_FIELDS = ("file", "top_k", "threshold", "task")


def fields(with_label: bool) -> tuple[str, ...]:
    return LEARN_FIELDS if with_label else PREDICT_FIELDS


def _refuse(name: str, message: str) -> BodyError:
    return BodyError(422, f"{name}: {message}", [ErrorItem(loc=name[:200], msg=message)])


def check_names(form: FormData, with_label: bool) -> None:
    """``BodyError`` naming the first field the route does not take, or one given twice
    that may only be given once."""
    accepted = fields(with_label)
    route = "/learn" if with_label else "/predict"
    for name in dict.fromkeys(form.keys()):
        if name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _refuse(
                name[:100],
                f"unknown field{hint}; multipart {route} takes the fields {', '.join(accepted)}",
            )
    for name in ("top_k", "threshold"):
        if len(form.getlist(name)) > 1:
            raise _refuse(name, "give it once")


def _number(form: FormData, name: str) -> Any:
    value = form.get(name)
    if value is not None and not isinstance(value, str):
        raise _refuse(name, "must be a form field, not a file")
    return value


async def form_body(form: FormData, with_label: bool, max_samples: int) -> dict[str, Any]:
    """The form as ``{"samples": [...], ...}``, ready for the request model."""
    check_names(form, with_label)
    files = form.getlist("file")
    if not files or not all(isinstance(f, UploadFile) for f in files):
        raise BodyError(422, "file: give one or more image files as form field 'file'")
    if len(files) > max_samples:
        raise BodyError(
            413, f"too many samples: {len(files)} in one request, the limit is {max_samples}"
        )
    images = [await f.read() for f in files if isinstance(f, UploadFile)]
    body: dict[str, Any] = {"samples": [{"image": image} for image in images]}
    tasks = form.getlist("task")
    if tasks:
        if len(tasks) == 1:
            tasks = tasks * len(images)
        if len(tasks) != len(images) or not all(isinstance(x, str) for x in tasks):
            raise _refuse("task", "give one task for all files, or one per file")
        for sample, task in zip(body["samples"], tasks, strict=True):
            sample["task"] = task
    if with_label:
        labels, ids = form.getlist("label"), form.getlist("id")
        if len(labels) == 1:
            labels = labels * len(images)
        if len(labels) != len(images) or not all(isinstance(x, str) for x in labels):
            raise BodyError(422, "label: give one label for all files, or one per file")
        if ids and len(ids) != len(images):
            raise BodyError(422, "id: give one id per file, or none")
        for i, sample in enumerate(body["samples"]):
            sample["label"] = labels[i]
            if ids:
                sample["id"] = ids[i]
        return body
    top_k = _number(form, "top_k")
    if top_k is not None:
        # isdigit() alone admits "²", which int() refuses.
        if not re.fullmatch(r"[0-9]{1,9}", top_k):
            raise _refuse("top_k", "must be a positive integer")
        body["top_k"] = int(top_k)
    threshold = _number(form, "threshold")
    if threshold is not None:
        try:
            body["threshold"] = float(threshold)
        except ValueError:
            raise _refuse("threshold", "must be a finite number") from None
        if not math.isfinite(body["threshold"]):
            raise _refuse("threshold", "must be a finite number")
    return body
