"""sapo_vl: SAPO / GSPO / GRPO reinforcement learning for Qwen3-VL."""
__version__ = "0.1.0"
