"""Verifier throughput: responses scored per second, per verifier, on generated responses.

    .venv/bin/python bench/bench_verifiers.py [--n 1000] [--workers N]
    .venv/bin/python bench/bench_verifiers.py --junk        (junk replies: seconds per reply, 10 KB vs 100 KB)

For each verifier it generates `n` R1-style responses (seeded; about half right, some without tags,
some with long reasoning; n/2 for the SymPy-bound math and combined) and scores them twice: inline in this process (`workers=0`, math still
guarded per call) and with `score_batch` over worker processes. Worker start-up and SymPy's first
calls are paid before the clock starts, as in training where the pool lives across steps. Prints one row per verifier and a
mixed G×B-like batch at the end.

`--junk` instead times every verifier on pathological replies (long prose, unbalanced braces, ten thousand
tags, nested boxes) at 10 KB and 100 KB and prints the ratio: near 10 means the scan stays linear. These
timings used to be assertions in tests/verifiers/test_junk.py; a test asserts behaviour, speed is measured here.
"""
from __future__ import annotations

import argparse
import random
import time

from sapo_vl.verifiers import VERIFIERS, score_batch
from sapo_vl.verifiers.batch import default_workers
from sapo_vl.verifiers.guard import warm_up

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "gray", "cyan"]


def _reasoning(rng: random.Random) -> str:
    words = "first we look at the figure then we compare the values and count the objects carefully".split()
    return " ".join(rng.choice(words) for _ in range(rng.randint(20, 400)))


def _wrap(rng: random.Random, answer: str) -> str:
    style = rng.random()
    if style < 0.6:
        return f"<think>{_reasoning(rng)}</think><answer>{answer}</answer>"
    if style < 0.85:
        return f"{_reasoning(rng)} so the final answer is \\boxed{{{answer}}}."
    return f"{_reasoning(rng)}. The answer is {answer}."


def _math(rng: random.Random) -> tuple[str, str, dict]:
    a, b = rng.randint(1, 50), rng.randint(2, 12)
    kind = rng.randrange(4)
    if kind == 0:
        gold, right, wrong = f"\\frac{{{a}}}{{{b}}}", f"{a / b:.6f}", f"\\frac{{{a + 1}}}{{{b}}}"
    elif kind == 1:
        gold, right, wrong = f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}", f"{a}\\sqrt{{{b + 1}}}"
    elif kind == 2:
        gold, right, wrong = str(a * b), str(a * b), str(a * b + 1)
    else:
        gold, right, wrong = f"[{a}, {a + b})", f"[{a},{a + b})", f"({a}, {a + b})"
    return _wrap(rng, right if rng.random() < 0.5 else wrong), gold, {}


def _choice(rng: random.Random) -> tuple[str, str, dict]:
    options = rng.sample(COLOURS, 4)
    gold = rng.choice("ABCD")
    pick = gold if rng.random() < 0.5 else rng.choice("ABCD")
    said = pick if rng.random() < 0.7 else options["ABCD".index(pick)]
    return _wrap(rng, said), gold, {"choices": options}


def _numeric(rng: random.Random) -> tuple[str, str, dict]:
    gold = rng.uniform(1, 5000)
    said = gold * rng.uniform(0.9, 1.1)
    text = f"{said:,.1f}" + ("%" if rng.random() < 0.2 else "")
    return _wrap(rng, text), f"{gold:.1f}", {}


def _count(rng: random.Random) -> tuple[str, str, dict]:
    gold = rng.randint(0, 30)
    said = gold if rng.random() < 0.5 else gold + rng.choice([-1, 1])
    words = "zero one two three four five six seven eight nine ten".split()
    text = words[said] if 0 <= said <= 10 and rng.random() < 0.3 else str(said)
    return _wrap(rng, text), str(gold), {}


def _exact(rng: random.Random) -> tuple[str, str, dict]:
    gold = rng.choice(COLOURS)
    said = gold if rng.random() < 0.5 else rng.choice(COLOURS)
    return _wrap(rng, said.capitalize() + "."), gold, {}


def _format(rng: random.Random) -> tuple[str, str, dict]:
    return _wrap(rng, str(rng.randint(0, 9))), "", {"style": rng.choice(["think_answer", "boxed"])}


def _combined(rng: random.Random) -> tuple[str, str, dict]:
    response, gold, _ = _math(rng)
    return response, gold, {"accuracy": "math", "weights": {"accuracy": 0.9, "format": 0.1}}


MAKERS = {"math": _math, "choice": _choice, "numeric": _numeric, "count": _count, "exact": _exact,
          "format": _format, "combined": _combined}


JUNK_UNITS = {  # a short piece, repeated to the wanted size
    "prose": "abc def, ghi; jkl ",
    "unbalanced braces": "\\boxed{{{",
    "closing braces": "}}}}",
    "think tags": "<think>",
    "answer tags": "<answer>",
    "backslashes": "\\\\",
    "letters and marks": "(A) B. option C ",
    "space runs": "答案 answer C {" + " " * 1000 + "^ }",
}
JUNK_PARAMS = {"combined": {"accuracy": "math"}, "choice": {}, "format": {}}
JUNK_GOLD = {"choice": "B", "exact": "seven", "format": ""}


def junk(repeats: int = 3) -> None:
    """Seconds per junk reply at 10 KB and 100 KB, per verifier and kind, best of `repeats`; and their ratio."""
    from sapo_vl.verifiers import score

    print(f"{'verifier':<10} {'junk':<18} {'10 KB s':>9} {'100 KB s':>9} {'ratio':>6}")
    for name in VERIFIERS:
        for kind, unit in JUNK_UNITS.items():
            times = []
            for size in (10_000, 100_000):
                reply = (unit * (size // len(unit) + 1))[:size]
                best = float("inf")
                for _ in range(repeats):
                    start = time.perf_counter()
                    score(name, reply, JUNK_GOLD.get(name, "7"), **JUNK_PARAMS.get(name, {}))
                    best = min(best, time.perf_counter() - start)
                times.append(best)
            print(f"{name:<10} {kind:<18} {times[0]:>9.4f} {times[1]:>9.4f} {times[1] / max(times[0], 1e-9):>6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="responses per verifier")
    parser.add_argument("--workers", type=int, default=default_workers(), help="worker processes for score_batch")
    parser.add_argument("--junk", action="store_true", help="time pathological replies instead (linearity)")
    args = parser.parse_args()
    assert set(MAKERS) == set(VERIFIERS), "every verifier needs a generator here"
    if args.junk:
        warm_up(1)
        junk()
        return

    warm_up(max(1, args.workers))
    warm_rng = random.Random(1)  # first SymPy calls in a fresh process are slow: keep them off the clock
    score_batch([("math", *_math(warm_rng)) for _ in range(50 * max(1, args.workers))], workers=args.workers)
    rng = random.Random(0)
    print(f"{args.n} responses per verifier ({args.n // 2} for math and combined, inline on {args.n // 5});"
          f" batch uses {args.workers} worker processes")
    print(f"{'verifier':<10} {'inline resp/s':>14} {'batch resp/s':>13} {'mean score':>11} {'timeouts':>9}")
    mixed = []
    for name, make in MAKERS.items():
        sympy = name in ("math", "combined")  # ~100 times slower: measured on fewer responses
        items = [(name, *make(rng)) for _ in range(args.n // 2 if sympy else args.n)]
        mixed += items[: args.n // 8]
        inline_items = items[: max(1, args.n // 5)] if sympy else items
        inline = score_batch(inline_items, workers=0)
        batch = score_batch(items, workers=args.workers)
        mean = sum(r.score for r in batch.results) / len(batch.results)
        print(f"{name:<10} {inline.per_second:>14,.0f} {batch.per_second:>13,.0f} {mean:>11.2f} {batch.timeouts:>9}")
    rng.shuffle(mixed)
    start = time.perf_counter()
    batch = score_batch(mixed, workers=args.workers)
    print(f"mixed batch of {len(mixed)}: {batch.per_second:,.0f} responses/s "
          f"({time.perf_counter() - start:.2f} s, {batch.timeouts} timeouts)")


if __name__ == "__main__":
    main()
