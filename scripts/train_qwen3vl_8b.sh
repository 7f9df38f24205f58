#!/usr/bin/env bash
# Qwen3-VL-8B-Instruct with SAPO on one node of 8 GPUs, ZeRO-3.
# Usage: NUM_GPUS=8 bash scripts/train_qwen3vl_8b.sh [key=value ...]   (overrides go to configs/qwen3vl_8b.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
deepspeed --num_gpus "${NUM_GPUS:-8}" --module sapo_vl.train configs/qwen3vl_8b.yaml "$@"
