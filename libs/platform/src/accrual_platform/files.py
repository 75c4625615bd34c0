"""Files only their owner may read: the embedded suite's var/ holds keys, tokens and databases.

Each file is created with mode 0600 from the start (never written first and tightened after,
which would leave a moment when another local user could open it), and what an older version
left readable is tightened when the suite starts.
"""

from __future__ import annotations

import os
import pathlib
import stat

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: pathlib.Path) -> pathlib.Path:
    """Create ``path`` (mode 0700) if missing, and make it and every file in it owner-only."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)
    for child in path.rglob("*"):
        mode = child.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue  # chmod would follow the link out of var/
        os.chmod(child, DIR_MODE if stat.S_ISDIR(mode) else FILE_MODE)
    return path


def create_private(path: pathlib.Path) -> None:
    """Make sure ``path`` exists with mode 0600, keeping any content it has. An existing file
    is not opened: closing any descriptor of a file drops every POSIX lock the process holds
    on it, and SQLite's locks on an open database would go with them (another process could
    then checkpoint and delete the WAL under this one's connections)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        os.chmod(path, FILE_MODE)
        return
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def write_private(path: pathlib.Path, text: str) -> None:
    """Write ``text`` to ``path``, which is owner-only from its creation on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
