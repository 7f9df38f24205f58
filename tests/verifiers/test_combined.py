"""Table-driven tests of the `combined` verifier: (response, gold, params, expected score, where it comes from).

Expected scores are computed by hand from the documented rule
score = (w_a · accuracy + w_f · format) / (w_a + w_f), default weights 0.9 / 0.1 (EasyR1's math reward).
"""
import pytest

from sapo_vl.verifiers import VerifierConfigError, score

GOOD3 = "<think>count</think><answer>3</answer>"
BAD3 = "<answer>3</answer>"  # right answer, no <think>
GOOD4 = "<think>count</think><answer>4</answer>"
BAD4 = "the answer is 4"
M = {"accuracy": "math"}
RULE = "0.9·accuracy + 0.1·format"
CASES = [
    # every accuracy verifier × {right, wrong} × {formatted, not}
    (GOOD3, "3", M, 1.0, f"{RULE}: 0.9·1 + 0.1·1"),
    (BAD3, "3", M, 0.9, f"{RULE}: 0.9·1 + 0.1·0"),
    (GOOD4, "3", M, 0.1, f"{RULE}: 0.9·0 + 0.1·1"),
    (BAD4, "3", M, 0.0, f"{RULE}: 0.9·0 + 0.1·0"),
    (GOOD3, "3", {"accuracy": "count"}, 1.0, f"{RULE} with count"),
    (BAD3, "3", {"accuracy": "count"}, 0.9, f"{RULE} with count"),
    (GOOD4, "3", {"accuracy": "count"}, 0.1, f"{RULE} with count"),
    (BAD4, "3", {"accuracy": "count"}, 0.0, f"{RULE} with count"),
    (GOOD3, "3", {"accuracy": "numeric"}, 1.0, f"{RULE} with numeric"),
    (BAD3, "3", {"accuracy": "numeric"}, 0.9, f"{RULE} with numeric"),
    (GOOD4, "3", {"accuracy": "numeric"}, 0.1, f"{RULE} with numeric (4 vs 3 is 33% off)"),
    (BAD4, "3", {"accuracy": "numeric"}, 0.0, f"{RULE} with numeric"),
    (GOOD3, "3", {"accuracy": "exact"}, 1.0, f"{RULE} with exact"),
    (BAD3, "3", {"accuracy": "exact"}, 0.9, f"{RULE} with exact"),
    (GOOD4, "3", {"accuracy": "exact"}, 0.1, f"{RULE} with exact"),
    (BAD4, "3", {"accuracy": "exact"}, 0.0, f"{RULE} with exact"),
    ("<think>x</think><answer>B</answer>", "B", {"accuracy": "choice"}, 1.0, f"{RULE} with choice"),
    ("<answer>B</answer>", "B", {"accuracy": "choice"}, 0.9, f"{RULE} with choice"),
    ("<think>x</think><answer>C</answer>", "B", {"accuracy": "choice"}, 0.1, f"{RULE} with choice"),
    ("C", "B", {"accuracy": "choice"}, 0.0, f"{RULE} with choice"),
    # weights
    (BAD3, "3", {**M, "weights": {"accuracy": 0.5, "format": 0.5}}, 0.5, "0.5·1 + 0.5·0"),
    (GOOD4, "3", {**M, "weights": {"accuracy": 0.5, "format": 0.5}}, 0.5, "0.5·0 + 0.5·1"),
    (BAD3, "3", {**M, "weights": {"accuracy": 3, "format": 1}}, 0.75, "weights normalised: 3/(3+1)"),
    (GOOD4, "3", {**M, "weights": {"accuracy": 3, "format": 1}}, 0.25, "weights normalised: 1/(3+1)"),
    (BAD3, "3", {**M, "weights": {"accuracy": 1}}, 1.0, "missing format weight = 0: accuracy only"),
    (GOOD4, "3", {**M, "weights": {"accuracy": 1, "format": 0}}, 0.0, "format weight 0: accuracy only"),
    (GOOD4, "3", {**M, "weights": {"accuracy": 0, "format": 1}}, 1.0, "accuracy weight 0: format only"),
    # parameters reach the parts
    ("<think>x</think><answer>47</answer>", "45", {"accuracy": "numeric", "accuracy_params": {"tolerance": 0.01}},
     0.1, "accuracy_params reach numeric: 4.4% > 1%"),
    ("x</think><answer>3</answer>", "3", {**M, "format_params": {"think_prefilled": True}}, 1.0,
     "format_params reach format: prefilled think"),
    ("x</think><answer>3</answer>", "3", M, 0.9, "without format_params the <think> is missing"),
    (r"<think>x</think> so \boxed{3}", "3", {**M, "format_params": {"style": "think_boxed"}}, 1.0,
     "format style think_boxed"),
    ("", "3", M, 0.0, "empty response"),
]


@pytest.mark.parametrize("response,answer,params,expected,source", CASES,
                         ids=[f"{i}-{c[4][:40]}" for i, c in enumerate(CASES)])
def test_combined(response, answer, params, expected, source):
    result = score("combined", response, answer, **params)
    assert result.score == pytest.approx(expected, abs=1e-12), f"{source}: got {result}"
    assert "accuracy" in result.reason or "format" in result.reason


def test_reason_and_extracted_come_from_the_parts():
    result = score("combined", BAD3, "3", accuracy="math")
    assert result.extracted == "3"
    assert result.reason == "accuracy 1 (identical); format 0 (missing <think>)"


@pytest.mark.parametrize("params", [
    {},  # accuracy is required
    {"accuracy": "combined"},  # no recursion
    {"accuracy": "format"},  # format is the other part
    {"accuracy": "maths"},
    {"accuracy": "math", "weights": {"accuracy": 1, "style": 1}},
    {"accuracy": "math", "weights": {"accuracy": -1, "format": 1}},
    {"accuracy": "math", "weights": {"accuracy": 0, "format": 0}},
    {"accuracy": "math", "accuracy_params": {"tolerance": 0.1}},  # math has no tolerance
    {"accuracy": "math", "format_params": {"style": "xml"}},
])
def test_bad_config_raises(params):
    with pytest.raises(VerifierConfigError):
        score("combined", GOOD3, "3", **params)
