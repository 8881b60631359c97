"""Helpers shared by the exporter tests (imported as ``exportcase``)."""

from __future__ import annotations

import os
from pathlib import Path

from qlcapsule import Capsule

FILES: dict[str, str | bytes] = {
    "README.md": "# demo\n",
    "src/app.py": "print('hello')\n" * 50,
    "src/ünïcode-名前.txt": "unicode name\n",
    "a/" + "deep/" * 30 + "long-name.txt": "a path longer than 100 bytes\n",
    "bin/run.sh": "#!/bin/sh\necho run\n",
    "data/blob.bin": bytes(range(256)) * 64,
    "data/photo.png": b"\x89PNG\r\n\x1a\n" + bytes(1000),
    "empty.txt": "",
}


def lock_paths(capsule: Capsule, with_sig: bool = False) -> list[str]:
    paths = capsule.files() + ["capsule.lock"] + (["capsule.sig"] if with_sig else [])
    return sorted(paths, key=lambda p: p.encode())


def copy_capsule(src: Path, dest: Path, umask: int = 0o022) -> Capsule:
    """Copy a capsule file by file with a different umask and fresh mtimes (another checkout)."""
    old = os.umask(umask)
    try:
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            target = dest / rel
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
                if os.stat(path).st_mode & 0o100:
                    os.chmod(target, 0o777 & ~umask)
                os.utime(target, (1_700_000_000, 1_700_000_000))
    finally:
        os.umask(old)
    return Capsule.load(dest)
