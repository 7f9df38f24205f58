#!/usr/bin/env bash
# Qwen3-VL-30B-A3B-Instruct (MoE) with SAPO on 8 GPUs, ZeRO-3 with optimizer offload: token ratios vary most in MoE
# models, SAPO's target case.
# Usage: NUM_GPUS=8 bash scripts/train_qwen3vl_30b_a3b.sh [key=value ...]   (overrides go to configs/qwen3vl_30b_a3b.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
deepspeed --num_gpus "${NUM_GPUS:-8}" --module sapo_vl.train configs/qwen3vl_30b_a3b.yaml "$@"
