#!/usr/bin/env bash
# The embedded demo on this machine: SAPO on the tiny Qwen3-VL through the DeepSpeed engine, CPU, one process.
set -euo pipefail
cd "$(dirname "$0")/.."
sapo-vl train configs/demo.yaml "$@"
