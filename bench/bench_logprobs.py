"""Peak memory of the update's log-prob computation at Qwen's 151,936-token vocabulary: chunked + checkpointed
(`sapo_vl.logprobs.chunked_logprobs`) vs the naive full (N, T, V) float32 log-softmax, forward and backward.

    .venv/bin/python bench/bench_logprobs.py [--tokens 4096] [--hidden 256] [--chunk 256]

Each variant runs in its own process; the figure is the growth of peak resident memory over the process's
baseline after its inputs exist (CPU), or torch.cuda.max_memory_allocated (GPU). Both are printed with their ratio.
Target: chunked at most a quarter of the naive peak.
"""
import argparse
import json
import resource
import subprocess
import sys

VOCAB = 151_936


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(variant: str, tokens: int, hidden: int, chunk: int) -> None:
    import torch

    from sapo_vl.logprobs import chunked_logprobs, naive_logprobs

    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    torch.manual_seed(0)
    head = torch.nn.Linear(hidden, VOCAB, bias=False, device=dev)
    h = torch.randn(1, tokens, hidden, device=dev, requires_grad=True)
    t = torch.randint(0, VOCAB, (1, tokens), device=dev)
    head.weight.grad = torch.zeros_like(head.weight)  # the gradient buffer exists in both variants
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_mb()
    if variant == "naive":
        lp = naive_logprobs(head(h), t)
    else:
        lp, _ = chunked_logprobs(h, head, t, chunk_size=chunk)
    lp.sum().backward()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else _rss_mb() - base
    print(json.dumps({"variant": variant, "peak_mb": peak, "device": dev, "value": float(lp.sum())}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=4096, help="response tokens in the batch (N·T)")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.tokens, args.hidden, args.chunk)
        return
    out = {}
    for v in ("naive", "chunked"):
        res = subprocess.run([sys.executable, __file__, "--child", v, "--tokens", str(args.tokens), "--hidden",
                              str(args.hidden), "--chunk", str(args.chunk)], capture_output=True, text=True, check=True)
        out[v] = json.loads(res.stdout.strip().splitlines()[-1])
    n, c = out["naive"], out["chunked"]
    assert abs(n["value"] - c["value"]) < 1e-2 * abs(n["value"]), (n, c)
    print(f"vocab {VOCAB}, {args.tokens} tokens, hidden {args.hidden}, chunk {args.chunk}, on {n['device']}")
    print(f"  naive full log-softmax : peak +{n['peak_mb']:8.1f} MiB")
    print(f"  chunked + checkpointed : peak +{c['peak_mb']:8.1f} MiB")
    print(f"chunked / naive peak: {c['peak_mb'] / n['peak_mb']:.3f} (target <= 0.25)")


if __name__ == "__main__":
    main()
