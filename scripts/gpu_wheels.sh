#!/usr/bin/env bash
# Fill a folder with the wheels `bench/gpu_check.py --wheels DIR` installs on a GPU machine without network: the
# project's pure-Python dependencies that a PyTorch GPU image usually lacks (this workplace's image has torch,
# accelerate, peft, safetensors, tokenizers, pillow, pyarrow, ...; its transformers is too old for the hf engine).
# Run it where pip reaches the registry. DeepSpeed ships as a source archive: it is built into a wheel here
# (pure Python; its ops build on the GPU machine at first use).
# Usage: bash scripts/gpu_wheels.sh [DIR=.whl] [PYTHON_VERSION=3.12]
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.whl}"
py="${2:-3.12}"
mkdir -p "$dir"
pure=(transformers==5.25.0 huggingface-hub qwen-vl-utils math-verify latex2sympy2_extended antlr4-python3-runtime==4.13.2
      datasets dill multiprocess hjson)  # (qwen-vl-utils imports av only for video: not carried, 35 MB)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dir" "${pure[@]}"
# pydantic (DeepSpeed's config) with its compiled core at the exact version it names
python3 -m pip download -q --only-binary=:all: --python-version "$py" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dir" pydantic
rm -f "$dir"/typing_extensions-*.whl  # the image's own is kept
python3 -m pip wheel -q --no-deps --no-build-isolation -w "$dir" "deepspeed==0.19.8" 2>/dev/null \
  || python3 -m pip wheel -q --no-deps -w "$dir" "deepspeed==0.19.8"
ls "$dir"
