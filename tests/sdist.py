"""A framework's source distribution, downloaded from PyPI at test time: the Django,
Flask-Caching and dogpile.cache suites run the framework's own tests from it, never a
copy kept in this repository."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

DOWNLOAD_TIMEOUT = 600


def _cache_root(project: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cachecore" / f"{project}-sdist"


def sdist_tree(project: str, version: str, member: str, marker: str) -> Path:
    """The ``member`` folder (``tests``) of ``project==version``'s source distribution,
    downloaded (``pip download --no-binary :all: --no-deps``) and unpacked on first use
    under the user's cache directory (``$XDG_CACHE_HOME`` or ``~/.cache``), a file lock
    keeping concurrent sessions from racing.

    :param marker: a file inside ``member`` whose presence means the tree is complete.
    :returns: the unpacked folder.
    :raises pytest.fail.Exception: the download failed (the output says why).
    """
    root = _cache_root(project)
    unpacked = root / f"{project}-{version}"
    tree = unpacked / member
    if (tree / marker).is_file():
        return tree
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (tree / marker).is_file():
            return tree
        with tempfile.TemporaryDirectory(dir=root) as work:
            download = subprocess.run(
                [
                    *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
                    *("--no-binary", ":all:", "--dest", work, f"{project}=={version}"),
                ],
                capture_output=True,
                text=True,
                timeout=DOWNLOAD_TIMEOUT,
                check=False,
            )
            if download.returncode != 0:
                pytest.fail(
                    f"cannot download {project} {version}'s source distribution from PyPI:\n"
                    f"{download.stdout}\n{download.stderr}"
                )
            (archive,) = Path(work).glob("*.tar.gz")
            with tarfile.open(archive) as tar:
                # The archive's top folder is named by the normalized project name
                # (flask_caching-2.5.1): take whatever it is.
                top = tar.getmembers()[0].name.split("/")[0]
                wanted = f"{top}/{member}/"
                members = [m for m in tar.getmembers() if m.name.startswith(wanted)]
                tar.extractall(work, members=members, filter="data")
            # Renamed into place whole: a reader sees all of it or nothing.
            os.replace(Path(work) / top, unpacked)
    return tree
