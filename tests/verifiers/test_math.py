"""Table-driven tests of the `math` verifier: (response, gold, params, expected score, where it comes from)."""
import pytest

from sapo_vl.verifiers import score

MV = "math-verify equivalence"
CASES = [
    ("2\\sqrt{17}", "2\\sqrt{17}", {}, 1.0, "bare LaTeX reply read as LaTeX, not as its leading 2"),
    ("9\\pi", "9\\pi", {}, 1.0, "bare LaTeX reply with a constant"),
    ("The answer is 2\\sqrt{17}", "2\\sqrt{17}", {}, 1.0, "'answer is' phrase read as LaTeX"),
    ("2\\sqrt{17}", "2", {}, 0.0, "a bare radical is not its coefficient"),
    # --- classic traps: answer tags and raw LaTeX
    (r"<answer>3</answer>", "3", {}, 1.0, "trap: <answer>3</answer> parses to nothing unless tags are stripped"),
    (r"<answer>2\sqrt{221}</answer>", r"2 \sqrt { 221 }", {}, 1.0, "trap: raw LaTeX gold must be wrapped"),
    (r"<answer>\sqrt{884}</answer>", r"2 \sqrt { 221 }", {}, 1.0, f"{MV}: 2√221 = √884"),
    (r"<answer>2\sqrt{220}</answer>", r"2 \sqrt { 221 }", {}, 0.0, f"{MV}: 2√220 ≠ 2√221"),
    # --- fractions, decimals, radicals, pi
    (r"so \boxed{\frac{1}{2}}", "0.5", {}, 1.0, f"{MV}: 1/2 = 0.5"),
    (r"<answer>0.5</answer>", r"\frac{1}{2}", {}, 1.0, f"{MV}: 0.5 = 1/2"),
    (r"\boxed{\frac{3}{4}}", r"$\frac{3}{4}$", {}, 1.0, "gold already in $…$ is passed as is"),
    (r"\boxed{0.75}", r"\boxed{\frac34}", {}, 1.0, "gold already boxed is passed as is"),
    (r"\boxed{0.333333}", r"\frac{1}{3}", {}, 1.0, f"{MV}: equal at float_rounding=6"),
    (r"\boxed{0.33}", r"\frac{1}{3}", {}, 0.0, f"{MV}: 0.33 differs at 6 decimals"),
    (r"\boxed{\dfrac{\sqrt{3}}{2}}", r"\frac{\sqrt3}{2}", {}, 1.0, "\\dfrac = \\frac (identical after clean-up)"),
    (r"\boxed{\sqrt{3}/2}", r"\frac{\sqrt3}{2}", {}, 1.0, f"{MV}: √3/2 symbolic"),
    (r"<answer>√3</answer>", r"\sqrt{3}", {}, 1.0, "our unicode rule: √ → \\sqrt"),
    (r"\boxed{2\pi}", "6.283185", {}, 1.0, f"{MV}: 2π numerically at 6 decimals"),
    (r"\boxed{3.14}", r"\pi", {}, 0.0, f"{MV}: 3.14 ≠ π at 6 decimals"),
    (r"\boxed{\frac{\pi}{2}}", r"90^\circ", {}, 0.0, f"{MV}: degrees are a dropped unit, so 90 ≠ π/2"),
    # --- percentages, units, thousands
    (r"\boxed{50\%}", "0.5", {}, 1.0, f"{MV}: 50% = 0.5"),
    (r"\boxed{50\%}", "50", {}, 1.0, f"{MV}: a percent also matches its plain number"),
    (r"\boxed{90^\circ}", "90", {}, 1.0, f"{MV}: units (degrees) stripped"),
    (r"\boxed{90°}", "90", {}, 1.0, "our unicode rule: ° → ^\\circ, then units stripped"),
    (r"\boxed{12 \text{ cm}}", "12", {}, 1.0, f"{MV}: \\text units stripped"),
    (r"<answer>12 cm</answer>", "12", {}, 1.0, f"{MV}: bare units stripped"),
    (r"<answer>5 red apples</answer>", "5", {}, 1.0, "our rule: trailing words dropped before parsing"),
    (r"<answer>The answer is 3</answer>", "3", {}, 1.0, "our rule: leading words dropped before parsing"),
    (r"<answer>Area = 12</answer>", "12", {}, 1.0, "our rule: 'Area =' is a leading word"),
    (r"\boxed{1,000}", "1000", {}, 1.0, f"{MV}: thousands separator"),
    # --- intervals, sets, expressions, equations
    (r"\boxed{[1, 2)}", "[1,2)", {}, 1.0, f"{MV}: intervals compare as sets"),
    (r"\boxed{(1, 2)}", "[1,2)", {}, 0.0, f"{MV}: open vs half-open interval"),
    (r"<answer>x \in [1,2)</answer>", "[1,2)", {}, 1.0, f"{MV}: membership in an interval"),
    (r"\boxed{\{1, 2\}}", r"\{2, 1\}", {}, 1.0, f"{MV}: sets are unordered"),
    (r"\boxed{(x+1)^2}", "x^2+2x+1", {}, 1.0, f"{MV}: symbolic expansion"),
    (r"\boxed{x^2+2x}", "x^2+2x+1", {}, 0.0, f"{MV}: different polynomials"),
    (r"\boxed{x = 3}", "3", {}, 1.0, f"{MV}: an assignment's right-hand side"),
    (r"\boxed{-3}", "-3", {}, 1.0, "integers compared exactly (fast path)"),
    (r"\boxed{3}", "-3", {}, 0.0, "integers compared exactly (fast path)"),
    (r"\boxed{41}", "42", {}, 0.0, "integers compared exactly (fast path)"),
    # --- extraction: which answer counts
    (r"\boxed{\boxed{7}}", "7", {}, 1.0, "nested boxes unwrapped"),
    (r"first \boxed{2}, no wait: \boxed{3}", "3", {}, 1.0, "last \\boxed wins"),
    (r"first \boxed{2}, no wait: \boxed{3}", "2", {}, 0.0, "last \\boxed wins"),
    (r"<think>maybe \boxed{2}</think><answer>3</answer>", "3", {}, 1.0, "<think> is never the answer"),
    (r"<think>maybe \boxed{2}</think><answer>3</answer>", "2", {}, 0.0, "<think> is never the answer"),
    (r"<think>so the answer is \boxed{3}", "3", {}, 0.0, "unterminated <think>: cut off while thinking"),
    (r"reasoning in a prefilled think</think><answer>3</answer>", "3", {}, 1.0, "lone </think>: Qwen3 template"),
    (r"Therefore the final answer is 42.", "42", {}, 1.0, f"{MV} free-text extraction: 'final answer is'"),
    (r"so we get $x = \frac{1}{2}$", "0.5", {}, 1.0, f"{MV} free-text extraction: last formula"),
    (r"Therefore the final answer is 42.", "42", {"tags_only": True}, 0.0, "tags_only: free text ignored"),
    # --- scientific notation, precision
    (r"<answer>2.4e1</answer>", "24", {}, 1.0, "2.4e1 is 24, not 2.4·e"),
    (r"\boxed{1.2e3}", "1200", {}, 1.0, "boxed 1.2e3"),
    (r"\boxed{1.5E-3}", "0.0015", {}, 1.0, "negative exponent, capital E"),
    (r"<answer>1.2 × 10^3</answer>", "1200", {}, 1.0, "1.2 × 10^3"),
    (r"<answer>1.2x10^3</answer>", "1200", {}, 1.0, "1.2x10^3 with a letter x"),
    (r"<answer>3 × 10⁸</answer>", "300000000", {}, 1.0, "superscript exponent"),
    (r"<answer>2.4e1</answer>", "2.4e1", {}, 1.0, "scientific notation in the gold too"),
    (r"\boxed{2e}", r"2e", {}, 1.0, "2e without exponent digits stays 2·e"),
    (r"<answer>１４</answer>", "14", {}, 1.0, "full-width digits"),
    (r"\boxed{6.666}", "6.67", {"float_rounding": 2}, 1.0, "MMMU / MATH-V precision, 2 decimals"),
    (r"\boxed{6.666}", "6.67", {}, 0.0, "default 6 decimals: 6.666 is not 6.67"),
    (r"\boxed{1.449}", "1.45", {"float_rounding": 2}, 1.0, "MathVista precision 2"),
    (r"\boxed{1.46}", "1.45", {"float_rounding": 2}, 0.0, "precision 2: 1.46 is not 1.45"),
    (r"\boxed{3.14}", r"\pi", {"float_rounding": 2}, 1.0, "MATH-V: π to 2 decimals"),
    (r"\boxed{0.67}", r"\frac{2}{3}", {"float_rounding": 2}, 1.0, "2/3 to 2 decimals"),
    (r"\boxed{}", "3", {}, 0.0, "an empty box is no answer"),
    (r"no maths here at all", "3", {}, 0.0, "nothing to parse"),
]


@pytest.mark.parametrize("response,answer,params,expected,source", CASES,
                         ids=[f"{i}-{c[4][:40]}" for i, c in enumerate(CASES)])
def test_math(response, answer, params, expected, source):
    result = score("math", response, answer, **params)
    assert result.score == expected, f"{source}: got {result}"
    assert result.reason


def test_extracted_is_the_tag_content():
    assert score("math", r"<answer>\frac{1}{2}</answer>", "0.5").extracted == r"\frac{1}{2}"
