"""Hard-link installed distributions from one venv into another, so two venvs share one copy on disk.

`make install-vllm` runs it before pip fills `.venv-vllm`: the CUDA libraries that torch pulls in (`nvidia-*`,
about 2 GB at the same versions in both venvs) are linked from `.venv`, pip sees them as installed, and replaces
only those whose version the vLLM venv's torch does not pin. Sharing is safe because pip never writes into an
existing file: it unlinks a path before writing it, and uninstalling removes only this venv's links.

Usage: python link_wheels.py SRC_VENV DST_VENV PATTERN [PATTERN ...]
PATTERN matches a distribution's name as its `*.dist-info` folder spells it (`nvidia_*`).
"""

from __future__ import annotations

import fnmatch
import os
import sys
from pathlib import Path


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python*/site-packages"))
    if not found:
        raise SystemExit(f"link_wheels: no lib/python*/site-packages under {venv}")
    return found[0]


def recorded_paths(dist_info: Path) -> list[str]:
    """The files a distribution installed, relative to site-packages (RECORD's first column)."""
    lines = (dist_info / "RECORD").read_text().splitlines()
    return [line.rsplit(",", 2)[0] for line in lines if line.strip()]


def link_distribution(dist_info: Path, src: Path, dst: Path) -> int:
    """Link every file of one distribution from src into dst; return the bytes shared. Skips files outside
    site-packages (console scripts under ../../../bin) and distributions dst already has."""
    if (dst / dist_info.name).exists():
        return 0
    shared = 0
    for rel in recorded_paths(dist_info):
        if rel.startswith(".."):
            continue
        source, target = src / rel, dst / rel
        if not source.is_file() or target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)
        shared += source.stat().st_size
    return shared


def link_matching(src_venv: Path, dst_venv: Path, patterns: list[str]) -> tuple[list[str], int]:
    src, dst = site_packages(src_venv), site_packages(dst_venv)
    if os.stat(src).st_dev != os.stat(dst).st_dev:
        return [], 0  # hard links cannot cross file systems; pip installs a copy as usual
    names, shared = [], 0
    for dist_info in sorted(src.glob("*.dist-info")):
        if any(fnmatch.fnmatch(dist_info.name, f"{p}-*.dist-info") for p in patterns):
            added = link_distribution(dist_info, src, dst)
            if added:
                names.append(dist_info.name.removesuffix(".dist-info"))
                shared += added
    return names, shared


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: python link_wheels.py SRC_VENV DST_VENV PATTERN [PATTERN ...]", file=sys.stderr)
        return 2
    names, shared = link_matching(Path(argv[0]), Path(argv[1]), argv[2:])
    print(f"link_wheels: {len(names)} distributions linked from {argv[0]} ({shared / 2**30:.2f} GiB not copied)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
