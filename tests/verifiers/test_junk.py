"""No verifier raises on model output: junk of every kind scores 0 with a reason.

How fast junk is scored (extraction stays linear) is measured by `bench/bench_verifiers.py --junk`, not asserted
here (a test never asserts wall-clock time)."""
import random

import pytest

from sapo_vl.verifiers import VERIFIERS, score

rng = random.Random(0)
_PROSE = "abcdefghijklmnopqrstuvwxyz     ,;-'"  # no digits, no capitals: nothing any gold below can match
_BYTES = [b for b in range(256) if not chr(b).isalnum()]  # raw bytes, but no ASCII digit or letter
JUNK = {
    "empty": "",
    "whitespace": " \n\t \r ",
    "100KB prose": "".join(rng.choice(_PROSE) for _ in range(100_000)),
    "binary bytes": bytes(rng.choice(_BYTES) for _ in range(4096)),
    "binary str": "".join(chr(c) for c in (rng.randrange(0x80, 0x2FFF) for _ in range(4096))),
    "control chars": "\x00\x01\x02\x1b[31m\x7f" * 1000,
    "lone surrogates": "\udcff\ud800 x" * 100,
    "unbalanced braces": r"\boxed{" * 1000 + "{{{",
    "closing braces": "}" * 10_000 + r"\boxed{",
    "nested boxes": r"\boxed{" * 5000 + "x" + "}" * 5000,
    "many think tags": "<think>" * 10_000,
    "many answer tags": "<answer>" * 10_000,
    "closing tags": "</think>" * 5000 + "</answer>" * 5000,
    "huge number": r"\boxed{" + "9" * 5000 + "}",
    "backslashes": "\\" * 20_000,
    "emoji and bidi": "😀\u202e\u200b" * 3000,
    # the readers of fractions, values, letters in phrases, full-width forms, powers of ten
    "nested fractions": "\\frac{" * 5000 + "1" + "}{2}" * 5000,
    "open parentheses": "(" * 20_000,
    "fraction chain": "1/" * 10_000 + "1",
    "digit groups": "1 234 " * 5000,
    "letter phrases": "It is " * 10_000,
    "full-width forms": "\uff08\uff21\uff09\u3000" * 5000,
    "powers of ten": "1.2 × 10^" * 5000,
    "space runs": "答案" + " " * 50_000 + "x C" + "\t" * 50_000 + "y answer" + " " * 50_000 + "z{" + " " * 50_000 + "} ^",
}
PARAMS = {name: {} for name in VERIFIERS} | {"combined": {"accuracy": "math"}}
GOLD = {name: "7" for name in VERIFIERS} | {"choice": "B", "exact": "seven", "format": ""}


def test_every_verifier_is_covered():
    assert set(PARAMS) == set(GOLD) == set(VERIFIERS)


@pytest.mark.parametrize("junk", sorted(JUNK))
@pytest.mark.parametrize("name", sorted(VERIFIERS))
def test_junk_scores_zero_with_a_reason(name, junk):
    response = JUNK[junk]
    result = score(name, response, GOLD[name], **PARAMS[name])
    assert result.score == 0.0, result
    assert result.reason and "verifier error" not in result.reason, result  # not saved by the safety net
    if isinstance(response, str):  # the verifier itself, without the dispatcher's coercion and net
        assert VERIFIERS[name](response, GOLD[name], **PARAMS[name]).score == 0.0
