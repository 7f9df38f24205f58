#!/usr/bin/env bash
# Qwen3-VL-8B-Instruct with SAPO across nodes: run this on the first node; DeepSpeed starts the others over ssh.
# hostfile lines look like "node1 slots=8"; every node needs the repo at the same path and `make install` done.
# LAUNCHER_ARGS: more deepspeed launcher flags, e.g. "--launcher slurm", or "--no_ssh --node_rank=N" run on each node.
# Usage: HOSTFILE=hostfile MASTER_ADDR=node1 bash scripts/train_multinode.sh [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC2086  # LAUNCHER_ARGS is a list of flags
deepspeed --hostfile "${HOSTFILE:-hostfile}" --master_addr "${MASTER_ADDR:-$(hostname)}" --master_port "${MASTER_PORT:-29500}" \
  ${LAUNCHER_ARGS:-} --module sapo_vl.train configs/qwen3vl_8b.yaml rollout.prompts_per_step=256 "$@"
