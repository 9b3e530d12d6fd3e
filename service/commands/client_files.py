"""The image files ``edgecl teach`` and ``edgecl predict`` send: found in folders (one
sub-folder per label, as torchvision's ImageFolder) or given one by one, and the sample id
that makes teaching the same file twice learn it once."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from edgecl.backbones.preprocess import FORMATS


def _suffixes() -> tuple[str, ...]:
    Image.init()
    found = {ext for ext, fmt in Image.registered_extensions().items() if fmt in FORMATS}
    return tuple(sorted(found))


#: File name endings of the image formats the daemon decodes (``.jpg``, ``.png``, ...).
IMAGE_SUFFIXES = _suffixes()


@dataclass(frozen=True)
class ImageFile:
    """``path`` as the user named it; ``key`` the path under the folder given (or the file
    name), which with the label and the bytes makes the sample id; ``label`` the label to
    teach, or the folder's label to check a prediction against (``None``: none)."""

    path: Path
    key: str
    label: str | None

    @property
    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def sample_id(self, data: bytes) -> str:
        """The same file (path, label and bytes) gives the same id on every run, so the
        daemon acknowledges a rerun without learning it again.

        >>> def sid(path, key, label): return ImageFile(Path(path), key, label).sample_id(b"x")
        >>> sid("a/cat/1.png", "cat/1.png", "cat") == sid("b/cat/1.png", "cat/1.png", "cat")
        True
        >>> sid("a/cat/1.png", "cat/1.png", "cat") == sid("a/cat/1.png", "cat/1.png", "dog")
        False
        >>> len(sid("a/cat/1.png", "cat/1.png", "cat"))
        45
        """
        h = hashlib.sha256(f"{self.label}\0{self.key}\0".encode())
        h.update(hashlib.sha256(data).digest())
        return f"file-{h.hexdigest()[:40]}"


@dataclass
class Found:
    files: list[ImageFile] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # path, why


def _walk(root: Path) -> Iterator[tuple[Path, str]]:
    """Every file under ``root`` with its path below it, sorted, hidden ones left out."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):  # ._x.jpg: macOS metadata, not an image
                path = Path(folder) / name
                yield path, path.relative_to(root).as_posix()


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def find(paths: Sequence[Path], label: str | None, *, by_folder: bool) -> Found:
    """The images in ``paths`` (files, or folders searched recursively).

    ``label`` given: every image has it. Otherwise with ``by_folder`` (teaching) a folder
    holds one sub-folder per label and a file directly in it, or a file given alone, is
    skipped; without (predicting) a file in a sub-folder carries that folder's name as the
    label to check against.
    """
    found = Found()
    for given in paths:
        if not given.exists():
            raise FileNotFoundError(f"no such file or folder: {given}")
        if given.is_dir():
            entries = list(_walk(given))
        else:
            entries = [(given, given.name)]
        for path, key in entries:
            if not is_image(path):
                found.skipped.append((path, "not an image file (" + ", ".join(_main()) + ")"))
                continue
            folder = key.split("/")[0] if "/" in key else None
            if label is not None:
                found.files.append(ImageFile(path, key, label))
            elif folder is not None:
                found.files.append(ImageFile(path, key, folder))
            elif by_folder:
                why = "give --label for files, or put them in a folder named after their label"
                found.skipped.append((path, f"not in a label sub-folder ({why})"))
            else:
                found.files.append(ImageFile(path, key, None))
    return found


def _main() -> list[str]:
    """The usual endings, for messages (the full list has .jfif, .dib, ...)."""
    usual = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
    return [s for s in usual if s in IMAGE_SUFFIXES] or list(IMAGE_SUFFIXES)


def interleaved(files: list[ImageFile]) -> list[ImageFile]:
    """Labels taken in turn (a1 b1 a2 b2 ...), each label's files in path order: a batch
    then holds several classes, which heads trained by gradient steps need, and the order
    is the same on every run.

    >>> fs = [ImageFile(Path(k), k, k[0]) for k in ("a1", "a2", "a3", "b1")]
    >>> [f.key for f in interleaved(fs)]
    ['a1', 'b1', 'a2', 'a3']
    """
    by_label: dict[str | None, list[ImageFile]] = {}
    for f in files:
        by_label.setdefault(f.label, []).append(f)
    queues = list(by_label.values())
    out: list[ImageFile] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out += [q[i] for q in queues if i < len(q)]
    return out


def describe_skipped(skipped: list[tuple[Path, str]], shown: int = 10) -> list[str]:
    """One line per skipped file (the first ``shown``), then how many more."""
    lines = [f"skipping {path}: {why}" for path, why in skipped[:shown]]
    if len(skipped) > shown:
        lines.append(f"skipping {len(skipped) - shown} more files")
    return lines
