"""One server per jobs folder: an exclusive advisory lock on ``<jobs_dir>/.server.lock``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from protocol.errors import Recast4DError


def lock_jobs_dir(jobs_dir: Path) -> Any:
    """Hold an exclusive lock on ``jobs_dir/.server.lock`` (POSIX) so two servers never share a store.

    A second server would otherwise mark the first one's running jobs as interrupted.
    """
    jobs_dir.mkdir(parents=True, exist_ok=True)
    handle = open(jobs_dir / ".server.lock", "a+")  # noqa: SIM115 - held for the server's lifetime
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; one server per jobs dir is up to the user
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise Recast4DError(f"the jobs folder {jobs_dir} is in use by another recast4d server (pid {owner}); "
                            "stop it or use --jobs-dir", code="jobs_dir_in_use") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
