"""What a run leaves behind: `metrics.jsonl`, sampled completions, TensorBoard events, optional wandb, PNG plots.

Only the main rank writes. On resume, metric lines after the resumed step are dropped so the file reads as one run.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

PLOTS = {
    "reward": ["reward_mean", "accuracy"],
    "length": ["response_length_mean", "truncation_rate"],
    "entropy": ["entropy"],
    "gate": ["gate_weight_mean", "soft_suppressed_frac", "clip_frac_low", "clip_frac_high"],
}
"""Plot file → metrics drawn in it (those the run logged)."""


class RunLog:
    def __init__(self, run_dir: Path, *, is_main: bool, tensorboard: bool, wandb: bool, wandb_project: str,
                 config: dict[str, Any]):
        self.dir, self.is_main = run_dir, is_main
        self.tb = self.wb = None
        if not is_main:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "samples").mkdir(exist_ok=True)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        if wandb:
            import wandb as wb

            self.wb = wb.init(project=wandb_project, name=run_dir.name, config=config, dir=str(run_dir))

    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.jsonl"

    def truncate_after(self, step: int) -> None:
        """Keep only the metric lines of steps < `step` (used when resuming from a checkpoint at `step`)."""
        if not self.is_main or not self.metrics_path.exists():
            return
        keep = [l for l in self.metrics_path.read_text().splitlines() if l and json.loads(l)["step"] < step]
        self.metrics_path.write_text("".join(l + "\n" for l in keep))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.is_main:
            return
        row = {"step": step, **{k: (v if isinstance(v, (int, float)) and math.isfinite(v) else str(v))
                                for k, v in metrics.items()}}
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)
            self.tb.flush()
        if self.wb is not None:
            self.wb.log(metrics, step=step)

    def samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        if not self.is_main:
            return
        with (self.dir / "samples" / f"step_{step:06d}.jsonl").open("w") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(l) for l in self.metrics_path.read_text().splitlines() if l]

    def plots(self) -> list[Path]:
        """One PNG per entry of PLOTS from metrics.jsonl; returns the files written."""
        if not self.is_main:
            return []
        rows = self.read_metrics()
        if not rows:
            return []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out = []
        (self.dir / "plots").mkdir(exist_ok=True)
        for name, keys in PLOTS.items():
            keys = [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in rows)]
            if not keys:
                continue
            fig, ax = plt.subplots(figsize=(6, 3.5))
            for k in keys:
                pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=k, marker="." if len(pts) < 40 else None)
            ax.set_xlabel("step")
            ax.set_title(name)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            path = self.dir / "plots" / f"{name}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            out.append(path)
        return out

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wb is not None:
            self.wb.finish()


def sparkline(values: list[float], lo: float = 0.0, hi: float = 1.0) -> str:
    """A one-line text curve, for terminals."""
    bars = "▁▂▃▄▅▆▇█"
    span = (hi - lo) or 1.0
    return "".join(bars[min(len(bars) - 1, max(0, int((v - lo) / span * (len(bars) - 1) + 0.5)))] for v in values)
