"""`tests/vllm/link_wheels.py`, the step of `make install-vllm` that shares `.venv`'s CUDA wheels by hard links."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "vllm" / "link_wheels.py"


def _dist(site: Path, name: str, version: str, files: dict[str, bytes]) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Name: {name}\nVersion: {version}\n")
    for rel, data in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)
    rows = [f"{rel},," for rel in files] + [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,",
                                           "../../../bin/some-script,,"]
    (info / "RECORD").write_text("\n".join(rows) + "\n")


def _venv(root: Path) -> Path:
    site = root / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    return site


def test_matching_distributions_become_hard_links_and_others_are_left(tmp_path):
    src, dst = _venv(tmp_path / "a"), _venv(tmp_path / "b")
    _dist(src, "nvidia_cublas", "13.1", {"nvidia/cu13/lib/libcublas.so": b"x" * 1000})
    _dist(src, "nvidia_nccl_cu13", "2.30", {"nvidia/nccl/lib/libnccl.so": b"n" * 10})
    _dist(src, "torch", "2.14.1", {"torch/__init__.py": b"t"})
    _dist(dst, "nvidia_nccl_cu13", "2.30", {"nvidia/nccl/lib/libnccl.so": b"own copy"})  # already there: kept

    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "a"), str(tmp_path / "b"), "nvidia_*"],
                         capture_output=True, text=True, check=True).stdout
    assert "1 distributions linked" in out

    lib = "nvidia/cu13/lib/libcublas.so"
    assert os.stat(src / lib).st_ino == os.stat(dst / lib).st_ino  # one file on disk, two names
    assert (dst / "nvidia_cublas-13.1.dist-info" / "RECORD").exists()  # pip sees it installed
    assert (dst / "nvidia/nccl/lib/libnccl.so").read_bytes() == b"own copy"
    assert not (dst / "torch").exists()  # only the names asked for
    assert not (tmp_path / "b" / "bin").exists()  # nothing outside site-packages


def test_usage_without_arguments(tmp_path):
    res = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert res.returncode == 2 and "usage" in res.stderr
