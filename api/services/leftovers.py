"""Result folders and the debris a killed job leaves beside or inside them.

audit.outputs.staged_directory writes a result into `.N.partial-*` beside its
target `N` and swaps it in (`.N.old-*` holds the previous one meanwhile);
checkpoints are written to hidden temp files, then renamed. A process killed
in between leaves these behind, and nothing else would ever remove them.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from audit.outputs import STAGING_KINDS, staging_prefix

_DEBRIS = re.compile(rf"^\.(\d+)\.({'|'.join(STAGING_KINDS)})-")


def remove_result(path: Path) -> None:
    """The result folder `path` and any debris of it."""
    shutil.rmtree(path, ignore_errors=True)
    remove_debris(path)


def remove_debris(path: Path) -> None:
    """Staging folders beside `path` and hidden temp files inside it; `path` itself stays."""
    for kind in STAGING_KINDS:
        for stage in path.parent.glob(staging_prefix(path.name, kind) + "*"):
            shutil.rmtree(stage, ignore_errors=True)
    if path.is_dir():
        for temp in path.rglob(".*"):
            if temp.is_file():
                temp.unlink(missing_ok=True)


def debris_owners(folder: Path) -> set[int]:
    """Ids of the results in `folder` (data/audits, data/models) that have staging folders beside them."""
    if not folder.is_dir():
        return set()
    return {int(m.group(1)) for p in folder.iterdir() if (m := _DEBRIS.match(p.name))}
