"""Writing result folders so that a failure never leaves a half-written one."""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

# The folders staged_directory keeps beside a target while it works: the new result ("partial") and,
# while swapping, the previous one ("old"). A process killed meanwhile leaves them behind.
STAGING_KINDS = ("partial", "old")


def staging_prefix(target_name: str, kind: str) -> str:
    return f".{target_name}.{kind}-"


@contextlib.contextmanager
def staged_directory(target: str | Path):
    """Yield a temp folder beside `target`; on success it replaces `target` whole."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=target.parent, prefix=staging_prefix(target.name, "partial")))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if target.exists():
        old = target.with_name(staging_prefix(target.name, "old") + stage.name[-8:])
        target.rename(old)
        stage.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        stage.rename(target)
