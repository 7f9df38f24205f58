#!/usr/bin/env bash
# Qwen3-VL-32B-Instruct with SAPO on 8 GPUs, ZeRO-3 with optimizer and parameter offload to CPU.
# Usage: NUM_GPUS=8 bash scripts/train_qwen3vl_32b.sh [key=value ...]   (overrides go to configs/qwen3vl_32b.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
deepspeed --num_gpus "${NUM_GPUS:-8}" --module sapo_vl.train configs/qwen3vl_32b.yaml "$@"
