"""Finding the images and videos in the folders a user names (tcdcn-detect, tcdcn-align)."""
from __future__ import annotations

import os
from pathlib import Path

from tcdcn.image import IMAGE_SUFFIXES, VIDEO_SUFFIXES

MEDIA_SUFFIXES = set(IMAGE_SUFFIXES) | VIDEO_SUFFIXES


def inside(path, folder) -> bool:
    """Whether `path` is `folder` or lies below it, links resolved."""
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real == top or real.startswith(top + os.sep)


def walk_media(folder: Path, failed: list[str], ignored: list[str] | None = None,
               skip=None, skipped: list[str] | None = None) -> list[Path]:
    """The images and videos below `folder`, sorted, following links to folders once each.
    Broken links and link loops go to `failed`, other files to `ignored`; a folder for which
    skip(folder) is true (a tool's own output) is left out and listed in `skipped`."""
    files, seen = [], set()
    for top, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen or (skip is not None and skip(top)):
            if real not in seen and skipped is not None:
                skipped.append(top)
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(names):
            p = Path(top) / name
            if not p.exists():   # False for a broken link and a loop
                failed.append(f"{p}: a broken link or a link loop")
            elif p.suffix.lower() in MEDIA_SUFFIXES:
                files.append(p)
            elif ignored is not None:
                ignored.append(str(p))
    return files
