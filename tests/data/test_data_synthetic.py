"""Synthetic recipes: deterministic by seed, valid records, and answers that agree with the pixels.

Each consistency test reads the answer back from the image (pixel majority, connected blobs and their
shapes, bar heights, slice areas, figure proportions) or recomputes it from the question independently
of the recipe's code."""
from __future__ import annotations

import io
import math
import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from sapo_vl.data.images import load_image
from sapo_vl.data.record import DOMAINS
from sapo_vl.data.recipe import get_recipe
from sapo_vl.data.synth import COLORS

SYNTHETIC = ["synthetic_chart", "synthetic_clevr", "synthetic_color", "synthetic_color_think", "synthetic_count",
             "synthetic_geometry"]


def pixels(rec) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(rec.images[0])).convert("RGB")).astype(int)


def question(rec) -> str:
    return rec.prompt[-1]["content"][-1]["text"]


@pytest.mark.parametrize("name", SYNTHETIC)
def test_same_seed_same_bytes_other_seed_or_split_differs(name):
    r = get_recipe(name)
    a, b = list(r.records("train", seed=1, limit=6)), list(r.records("train", seed=1, limit=6))
    assert [(x.id, x.answer, x.images, x.prompt) for x in a] == [(x.id, x.answer, x.images, x.prompt) for x in b]
    other = list(r.records("train", seed=2, limit=6))
    assert [x.images for x in other] != [x.images for x in a]
    test = list(r.records("test", seed=1, limit=6))
    assert [x.images for x in test] != [x.images for x in a] and all(x.split == "test" for x in test)
    assert [x.images for x in r.records("train", seed=1, limit=3)] == [x.images for x in a[:3]]  # limit-free


@pytest.mark.parametrize("name", SYNTHETIC)
def test_records_are_valid_and_images_need_no_resize(name):
    r = get_recipe(name)
    recs = list(r.records("train", limit=25))
    assert len(recs) == 25 and len({x.id for x in recs}) == 25
    for x in recs:
        assert x.domain == r.domain in DOMAINS and x.answer.strip() and x.source == r.source
        assert x.verifier in (r.verifier, "exact") and len(x.images) == 1 and isinstance(x.images[0], bytes)
        raw = Image.open(io.BytesIO(x.images[0]))
        assert raw.size == load_image(x.images[0]).size  # already multiples of 32 within the pixel budget
    assert len(list(r.records("test"))) == 200  # default split size


def test_color_answer_is_the_pixel_majority():
    recs = list(get_recipe("synthetic_color").records("train", limit=60))
    palette = {v: k for k, v in COLORS.items()}
    for x in recs:
        counts = Counter(palette[tuple(p)] for p in pixels(x).reshape(-1, 3))  # KeyError if off-palette
        top, n = counts.most_common(1)[0]
        assert top == x.answer and n / sum(counts.values()) >= 0.6
        assert set(counts) <= {"red", "green", "blue", "yellow"}
    assert {x.answer for x in recs} == {"red", "green", "blue", "yellow"}


def test_color_think_worked_response_names_what_the_pixels_show_and_scores_1():
    from sapo_vl.verifiers import score

    recs = list(get_recipe("synthetic_color_think").records("train", limit=60))
    palette = {v: k for k, v in COLORS.items()}
    for x in recs:
        counts = Counter(palette[tuple(p)] for p in pixels(x).reshape(-1, 3))
        top, n = counts.most_common(1)[0]
        assert top == x.answer and n / sum(counts.values()) >= 0.5
        m = re.fullmatch(r"<think>the image is (\w+) with ([\w ,]+); the largest color is (\w+)</think>"
                         r"<answer>(\w+)</answer>", x.meta["response"])
        assert m and m[1] == m[3] == m[4] == x.answer, x.meta["response"]
        named = set(re.split(r", | and ", m[2]))
        assert len(named) == 2 and x.answer not in named and set(counts) <= named | {x.answer}
        assert x.meta["patches"][-1] in counts  # the patch drawn last is never covered
        assert score(x.verifier, x.meta["response"], x.answer, **x.verifier_params).score == 1.0
        # the answer is read only from the tags: the right color said without them scores 0
        assert score(x.verifier, x.answer, x.answer, **x.verifier_params).score == 0.0
    assert len({x.answer for x in recs}) == 6


def test_color_difficulty_knobs():
    recs = list(get_recipe("synthetic_color").records("train", limit=30, n_colors=6, patches=4, dominance=0.3))
    palette = {v: k for k, v in COLORS.items()}
    for x in recs:
        counts = Counter(palette[tuple(p)] for p in pixels(x).reshape(-1, 3))
        assert counts.most_common(1)[0][0] == x.answer and len(counts) <= 5
    with pytest.raises(ValueError, match="dominance"):
        list(get_recipe("synthetic_color").records("train", limit=1, patches=3, dominance=0.2))


def blobs(img: np.ndarray, background: tuple) -> list[list[tuple[int, int]]]:
    """4-connected components of the non-background pixels (plain BFS)."""
    fg = np.any(img != background, axis=2)
    seen = np.zeros_like(fg)
    out = []
    for y0, x0 in zip(*np.nonzero(fg)):
        if seen[y0, x0]:
            continue
        stack, comp = [(y0, x0)], []
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            comp.append((y, x))
            for yy, xx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= yy < fg.shape[0] and 0 <= xx < fg.shape[1] and fg[yy, xx] and not seen[yy, xx]:
                    seen[yy, xx] = True
                    stack.append((yy, xx))
        out.append(comp)
    return out


def test_count_answer_matches_blobs_in_the_image():
    palette = {v: k for k, v in COLORS.items()}
    for x in get_recipe("synthetic_count").records("train", limit=30):
        img = pixels(x)
        found = []
        for comp in blobs(img, (255, 255, 255)):
            ys, xs = zip(*comp)
            fill = len(comp) / ((max(ys) - min(ys) + 1) * (max(xs) - min(xs) + 1))
            kind = "square" if fill > 0.95 else "circle" if fill > 0.68 else "triangle"
            found.append((kind, palette[tuple(img[comp[0]])]))
        assert len(found) == len(x.meta["shapes"])
        what = re.match(r"How many (.+) are there", question(x)).group(1)
        if what == "shapes":
            expected = len(found)
        elif what.endswith(" shapes"):
            expected = sum(c == what.split()[0] for _, c in found)
        else:
            expected = sum(k == what[:-1] for k, _ in found)
        assert x.answer == str(expected), (question(x), found)


def test_clevr_objects_are_drawn_and_answers_recomputed_from_the_question():
    words = {"size": {"small", "large"}, "color": set(COLORS), "shape": {"cube", "sphere", "cylinder"}}

    def parse(phrase: str) -> dict:
        toks = phrase.rstrip("s").split() if phrase.endswith("s") else phrase.split()
        return {a: t for t in toks for a, vals in words.items() if t in vals}

    for x in get_recipe("synthetic_clevr").records("train", limit=40, relations=0.7):
        img, objs = pixels(x), x.meta["objects"]
        for o in objs:
            assert tuple(img[o["y"], o["x"]]) == COLORS[o["color"]]
        q = question(x)
        m = re.match(r"How many (.+?) are (left of|right of|in front of|behind) the (.+)\?", q) or \
            re.match(r"How many (.+?) are there\?", q)
        matches = [o for o in objs if all(o[a] == v for a, v in parse(m.group(1)).items())]
        if m.lastindex == 3:
            ref_attrs = parse(m.group(3))
            refs = [o for o in objs if all(o[a] == v for a, v in ref_attrs.items())]
            assert len(refs) == 1, q
            ref, rel = refs[0], m.group(2)
            test = {"left of": lambda o: o["x"] < ref["x"], "right of": lambda o: o["x"] > ref["x"],
                    "in front of": lambda o: o["y"] > ref["y"], "behind": lambda o: o["y"] < ref["y"]}[rel]
            matches = [o for o in matches if o is not ref and test(o)]
            assert all(abs(o["x"] - ref["x"]) >= 8 and abs(o["y"] - ref["y"]) >= 8 for o in objs if o is not ref)
        assert x.answer == str(len(matches)), q


def test_chart_answers_agree_with_bar_heights_and_slice_areas():
    from sapo_vl.recipes.synthetic_chart import BOTTOM, H, TOP

    kinds = Counter()
    for x in get_recipe("synthetic_chart").records("train", limit=40, kinds="bar,pie"):
        img, m = pixels(x), x.meta
        kinds[m["kind"]] += 1
        colors = [COLORS[c] for c in list(COLORS)[: len(m["labels"])]]
        if m["kind"] == "bar":
            measured = []
            for cx, c in zip(m["x"], colors):
                col = img[:, cx]
                h = sum(1 for y in range(H - BOTTOM - 1, 0, -1) if tuple(col[y]) == c)
                measured.append(h / (H - BOTTOM - TOP) * m["axis_top"])
            assert np.allclose(measured, m["values"], atol=m["axis_top"] / (H - BOTTOM - TOP) * 1.5)
        else:
            x0, y0, x1, y1 = m["pie_box"]
            box = img[y0:y1 + 1, x0:x1 + 1].reshape(-1, 3)
            counts = [int(np.all(box == c, axis=1).sum()) for c in colors]
            measured = [100 * n / sum(counts) for n in counts]
            assert np.allclose(measured, m["values"], atol=1.0)
        by_label = dict(zip(m["labels"], measured))
        q = question(x)
        if m["question_type"] == "max":
            assert x.answer == max(by_label, key=by_label.get) and x.verifier == "exact"
        elif m["question_type"] == "min":
            assert x.answer == min(by_label, key=by_label.get) and x.verifier == "exact"
        else:
            named = [lab for lab in m["labels"] if re.search(rf"\b{lab}\b", q)]
            want = by_label[named[0]] if len(named) == 1 else abs(by_label[named[0]] - by_label[named[1]])
            assert abs(float(x.answer) - want) <= 2.0 and x.verifier == "numeric", (q, x.answer, want)
    assert kinds["bar"] and kinds["pie"]


def value_of(answer: str) -> float:
    """Evaluate the recipe's answer forms: 13, 5\\sqrt{2}, \\sqrt{34}, 49\\pi."""
    if m := re.fullmatch(r"(\d*)\\sqrt\{(\d+)\}", answer):
        return (int(m.group(1)) if m.group(1) else 1) * math.sqrt(int(m.group(2)))
    if m := re.fullmatch(r"(\d+)\\pi", answer):
        return int(m.group(1)) * math.pi
    return float(answer)


def test_geometry_answers_match_the_figure():  # and the figure matches its labels
    seen = set()
    for x in get_recipe("synthetic_geometry").records("train", limit=60):
        m, p = x.meta, x.meta["problem"]
        seen.add(p)
        expected = {
            "hypotenuse": lambda: math.hypot(*m["legs"]),
            "leg": lambda: math.sqrt(m["hypotenuse"] ** 2 - m["legs"][0] ** 2),
            "rect_area": lambda: m["sides"][0] * m["sides"][1],
            "rect_diagonal": lambda: math.hypot(*m["sides"]),
            "angle": lambda: 180 - sum(m["angles"]),
            "circle_area": lambda: math.pi * m["radius"] ** 2,
            "circumference": lambda: 2 * math.pi * m["radius"],
        }[p]()
        assert math.isclose(value_of(x.answer), expected, rel_tol=1e-9), (p, x.answer)
        if "sqrt" in x.answer:  # simplest radical form: no square factor left under the root
            inner = int(re.search(r"\{(\d+)\}", x.answer).group(1))
            assert all(inner % (d * d) for d in range(2, math.isqrt(inner) + 1))
        img, pts = pixels(x), [tuple(q) for q in m["points"]]
        sides = list(zip(pts, pts[1:] + pts[:1])) if len(pts) > 2 else [tuple(pts)]
        for a, b in sides:  # every side is drawn in black where the meta says
            for t in (0.25, 0.5, 0.75):
                cx, cy = round(a[0] + t * (b[0] - a[0])), round(a[1] + t * (b[1] - a[1]))
                assert (img[cy - 2:cy + 3, cx - 2:cx + 3] == 0).all(axis=2).any(), (p, t)
        length = [math.dist(a, b) for a, b in sides]
        if p in ("hypotenuse", "leg"):  # drawn to scale: legs C-A and C-B in the ratio of the labels
            assert math.isclose(length[0] / length[2], m["legs"][0] / m["legs"][1], rel_tol=1e-6)
        if p in ("rect_area", "rect_diagonal"):
            assert math.isclose(length[0] / length[1], m["sides"][0] / m["sides"][1], rel_tol=1e-6)
    assert seen == {"hypotenuse", "leg", "rect_area", "rect_diagonal", "angle", "circle_area", "circumference"}


def test_geometry_without_radicals_has_integer_or_pi_answers():
    for x in get_recipe("synthetic_geometry").records("train", limit=40, radicals=False):
        assert "sqrt" not in x.answer
