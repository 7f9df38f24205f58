"""Published scoring rules restated in our own words, for the parity tables that `eval_helpers.py` does not
cover yet: MMMU's open-question parsing, MATH-Vision's evaluation and MathVista's normalisation. They exist to
check that the hand-written `published` column of each table follows the rule; they are not used for
scoring. Written from reading the published code (cited per function), not copied from it.
"""
from __future__ import annotations

import ast
import math
import re


# ------------------------------------------------------------------------------------------ MMMU, open questions
def _mmmu_number_strings(text: str) -> list[str]:
    """Numbers MMMU's `extract_numbers` finds: comma-grouped, scientific notation, and plain numbers."""
    grouped = re.findall(r"-?\b\d{1,3}(?:,\d{3})+\b", text)
    scientific = re.findall(r"-?\d+(?:\.\d+)?[eE][+-]?\d+", text)
    plain = re.findall(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])", text)
    return grouped + scientific + plain


def _mmmu_normalise(text: str) -> list:
    """A number (commas dropped) rounded to 2 decimals, else the lower-cased string (a 1-character string is
    padded with a space on either side, so that it does not match inside words)."""
    text = text.strip()
    try:
        return [round(float(text.replace(",", "")), 2)]
    except ValueError:
        text = text.lower()
        return [" " + text, text + " "] if len(text) == 1 else [text]


def mmmu_open_score(response: str, gold: str) -> float:
    """MMMU eval_utils.py `parse_open_response` + `eval_open`: split the reply into sentences and lines; in each,
    keep the shortest tail after a key phrase ("so ", "is ", "thus ", "therefore ", "final ", "answer ",
    "result ", "could be ", and "=" in the last one); the candidates are those tails and every number in them;
    correct when a normalised number equals the normalised gold, or the gold string occurs in a string. A gold
    that lists several answers ("['2.5', '5/2']") accepts any of them."""
    text = response.strip().strip(".").lower()
    pieces = re.split(r"\.\s(?=[A-Z])|\n", text)
    keys = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result "]
    tails = []
    for i, piece in enumerate(pieces):
        use = keys + (["="] if i == len(pieces) - 1 else [])
        found = [piece.split(k)[-1].strip() for k in use if k in piece]
        if found:
            shortest = min(found, key=len)
            if shortest.strip() not in (":", ",", ".", "!", "?", ";", "'") and shortest:
                tails.append(shortest)
    tails = tails or [text]
    candidates = []
    for item in tails + [n for t in tails for n in _mmmu_number_strings(t)]:
        candidates.extend(_mmmu_normalise(item))
    accepted = ast.literal_eval(gold) if gold.startswith("[") else [gold]  # a list of accepted answers: any
    golds = [g for a in accepted for g in _mmmu_normalise(a)]
    for pred in set(candidates):
        if isinstance(pred, str):
            if any(isinstance(g, str) and g in pred for g in golds):
                return 1.0
        elif pred in golds:
            return 1.0
    return 0.0


# ------------------------------------------------------------------------------------------ MATH-Vision
def _mathv_value(text: str) -> float:
    """What `round(eval(str(latex2sympy(x))), 2)` computes in MATH-V's utils.py: the LaTeX parsed to SymPy, its
    printed form evaluated with Python's math module (so Euler's E, a free symbol or an interval fails).
    latex2sympy2_extended (math-verify's parser) stands in for latex2sympy2."""
    from latex2sympy2_extended import latex2sympy

    expr = latex2sympy(text)
    return round(eval(str(expr), {"__builtins__": {}}, dict(vars(math))), 2)  # noqa: S307 (our own table strings)


def _mathv_tuple(text: str) -> str:
    """MATH-V `eval_tuple`: "(a,b)" / "[a,b]" with each element's value rounded to 2 decimals."""
    try:
        inner = text[1:-1].split(",")
        if len(inner) > 1 and (text[0], text[-1]) in (("(", ")"), ("[", "]")):
            parts = [p if "infty" in p or p in ("a", "-a") else str(_mathv_value(p)) for p in inner]
            return text[0] + ",".join(parts) + text[-1]
    except Exception:  # noqa: BLE001 - the published rule keeps the text on any failure
        return text
    return text


def mathv_is_equal(gold: str, answer: str) -> bool:
    """MATH-V `is_equal`: lower-cased; empty is wrong; equal stripped strings; equal tuples; equal values at 2
    decimals; anything that fails to evaluate is wrong."""
    gold, answer = gold.lower(), answer.lower()
    if not gold.replace(" ", "") or not answer.replace(" ", ""):
        return False
    if gold.strip() == answer.strip():
        return True
    gold, answer = _mathv_tuple(gold), _mathv_tuple(answer)
    if gold == answer:
        return True
    try:
        return _mathv_value(gold) == _mathv_value(answer)
    except Exception:  # noqa: BLE001
        return False


def _mathv_clean(ans: str) -> str:
    """MATH-V `_strip_string` (with `_fix_sqrt`, `_fix_fracs`, `_fix_a_slash_b`), in our words."""
    ans = ans.replace("\n", "").replace("\\!", "").replace("\\\\", "\\").replace("tfrac", "frac")
    ans = ans.replace("dfrac", "frac").replace("\\left", "").replace("\\right", "")
    ans = ans.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "").replace("$", "")
    ans = ans.split("\\text{ ")[0].replace("\\%", "")
    ans = ans.replace(" .", " 0.").replace("{.", "{0.")
    if not ans:
        return ans
    if ans[0] == ".":
        ans = "0" + ans
    if len(ans.split("=")) == 2:
        ans = ans.split("=")[-1]
    if len(ans.split("\\approx")) == 2:
        ans = ans.split("\\approx")[-1]
    if "sqrt" in ans:  # \sqrt3 -> \sqrt{3}
        ans = re.sub(r"\\sqrt([^{\\])", r"\\sqrt{\1}", ans)
    ans = ans.replace(" ", "")
    if "sqrt" in ans:  # \frac12 -> \frac{1}{2} (the published code only does this when a sqrt is present)
        ans = re.sub(r"\\frac([^{\\])([^{\\])", r"\\frac{\1}{\2}", ans)
    if ans == "0.5":
        ans = "\\frac{1}{2}"
    m = re.fullmatch(r"(-?\d+)/(-?\d+)", ans)
    if m and ans == f"{int(m.group(1))}/{int(m.group(2))}":
        ans = "\\frac{" + m.group(1) + "}{" + m.group(2) + "}"
    return ans


def _mathv_find(s: str) -> str:
    """MATH-V `find_math_answer`: lower-case; the last 'oxed{...}' (greedy to the last brace); the part after the
    last '=' and '\\approx'; units, spaces and decorations removed; then `_mathv_clean`."""
    s = s.lower().replace("{}", "")
    boxed = re.findall(r"oxed{(.*)}", s, flags=re.S)
    ans = boxed[-1] if boxed else s
    if "}" in ans and ("{" not in ans or ans.find("}") < ans.find("{")):
        ans = ans.split("}")[0]
    ans = ans.split("=")[-1].split("\\approx")[-1]
    for old, new in ((" ", ""), ("\\,", ""), ("∞", "\\infty"), ("+\\infty", "\\infty"), ("\\\\", "\\"), ("\n", ""),
                     ("\\text", ""), ("\\mbox", ""), ("bmatrix", "pmatrix"), ("\\left", ""), ("\\right", ""),
                     ("^{\\circ}", ""), ("^\\circ", ""), ("{m}^3", ""), ("m^3", ""), ("{units}", ""), ("units", ""),
                     ("{km}", ""), ("km", "")):
        ans = ans.replace(old, new)
    return _mathv_clean(ans)


def mathv_model_answer(response: str) -> str:
    """MATH-V evaluate.py: the model answer read from a raw reply."""
    answer = response.strip()
    for c in "ABCDE":
        if (answer.endswith((f" {c}.", f" ({c}).")) or answer.startswith((f"{c}\n", f"({c})\n", f"({c}) {c}\n"))):
            answer = c
    tail = answer.split("is ")[-1].rstrip(".")
    try:
        float(tail)
        answer = tail
    except ValueError:
        pass
    if "oxed{" not in answer:
        for flag in ("the final answer is", "the answer is", "the correct answer is", "the answer should be"):
            for phrase in (flag, flag.replace("the", "The")):
                before = answer
                answer = answer.split(phrase)[-1].strip()
                if phrase in before:
                    answer = answer.split("\n")[0].split(". ")[0]
    elif answer.count("oxed{") > 1:
        answer = "\\boxed{" + answer.split("oxed{")[-1]
    answer = _mathv_find(answer)
    for c in "abcde":
        answer = answer.replace(f"({c})", c).replace("{" + c + "}", c)
    return answer.rstrip(".").lstrip(":").strip()


def mathv_score(response: str, gold: str, options: list[str] | None) -> float:
    """Correct when the model answer equals the gold (a letter, or the value) or the gold option's text."""
    answer = mathv_model_answer(response)
    gold_text = options[ord(gold) - ord("A")] if options else ""
    return float(mathv_is_equal(gold, answer) or mathv_is_equal(gold_text, answer))


# ------------------------------------------------------------------------------------------ MathVista
def _edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def mathvista_extract(response: str, answer_type: str, choices: list[str] | None) -> str:
    """MathVista's extraction without its LLM: the reply itself when it is one of the choices, an integer or a
    float (the published quick paths); otherwise the content of the last <answer> tag stands in for what GPT
    would extract (the reply when there is no tag)."""
    if not response:
        return ""
    if choices and response in choices:
        return response
    for kind, read in (("integer", lambda r: str(int(r))), ("float", lambda r: str(float(r)))):
        if answer_type == kind:
            try:
                return read(response)
            except ValueError:
                pass
    tags = re.findall(r"<answer>(.*?)</answer>", response, flags=re.S)
    return tags[-1].strip() if tags else response.strip()


def mathvista_score(response: str, gold: str, answer_type: str, precision: int = 1,
                    choices: list[str] | None = None) -> float:
    """MathVista calculate_score.py `normalize_extracted_answer` + `safe_equal` on the extraction above: a choice
    is a letter ("(B)" or "B") turned into its option text, else the most similar option (edit distance); an
    integer is int(float(x)) (truncated); a float is rounded to `precision` decimals; then the strings must be
    equal."""
    extraction = mathvista_extract(response, answer_type, choices)
    if choices:
        extraction = extraction.strip()
        letter = re.findall(r"\(([a-zA-Z])\)", extraction)
        if letter:
            extraction = letter[0].upper()
        letters = [chr(ord("A") + i) for i in range(len(choices))]
        if extraction in letters:
            extraction = choices[letters.index(extraction)]
        else:
            extraction = min(choices, key=lambda c: _edit_distance(extraction, c))  # first of the closest
    elif answer_type == "integer":
        try:
            extraction = str(int(float(extraction)))
        except ValueError:
            extraction = None
    elif answer_type == "float":
        try:
            extraction = str(round(float(extraction), precision))
        except ValueError:
            extraction = None
    return float(extraction is not None and str(extraction).strip() == str(gold).strip())
