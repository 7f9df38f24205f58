"""Tiny local copies of each real benchmark, written in the schema and layout its hub repository uses (images as
parquet `{"bytes", "path"}` structs, class labels as ints), so the real tasks run offline through the same code
that reads the hub. `WRITERS[task](folder)` writes one and returns the `--data-path` to pass."""
from __future__ import annotations

import io
import json
from pathlib import Path

import datasets as ds
from PIL import Image, ImageDraw


def png(color=(200, 40, 40), size=(48, 32)) -> bytes:
    img = Image.new("RGB", size, (255, 255, 255))
    ImageDraw.Draw(img).rectangle([4, 4, size[0] - 5, size[1] - 5], fill=color)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def image(color=(200, 40, 40)) -> dict:
    return {"bytes": png(color), "path": None}


def parquet(path: Path, rows: list[dict], features: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.Dataset.from_list(rows, features=ds.Features(features)).to_parquet(str(path))
    return path


def chartqa(folder: Path) -> Path:
    f = {"image": ds.Image(), "query": ds.Value("string"), "label": ds.List(ds.Value("string")),
         "human_or_machine": ds.ClassLabel(names=["human", "machine"])}
    rows = [{"image": image(), "query": "What is the highest value?", "label": ["14"], "human_or_machine": 0},
            {"image": image((0, 90, 200)), "query": "Which party leads?", "label": ["Democrats"], "human_or_machine": 1},
            {"image": image((0, 150, 0)), "query": "What is the share in 2019?", "label": ["45.5"], "human_or_machine": 0},
            {"image": image(), "query": "What is the sum?", "label": [], "human_or_machine": 1}]  # no answer: skipped
    parquet(folder / "data" / "test-00000-of-00001.parquet", rows, f)
    return folder


def mmmu(folder: Path) -> Path:
    f = {"id": ds.Value("string"), "question": ds.Value("string"), "options": ds.Value("string"),
         "explanation": ds.Value("string"), **{f"image_{k}": ds.Image() for k in range(1, 8)},
         "img_type": ds.Value("string"), "answer": ds.Value("string"), "topic_difficulty": ds.Value("string"),
         "question_type": ds.Value("string"), "subfield": ds.Value("string")}

    def row(id_, question, options, answer, images=1, qtype="multiple-choice"):
        r = {"id": id_, "question": question, "options": options, "explanation": "", "img_type": "['Diagrams']",
             "answer": answer, "topic_difficulty": "Medium", "question_type": qtype, "subfield": "Geometry"}
        r.update({f"image_{k}": image((30 * k, 100, 100)) if k <= images else None for k in range(1, 8)})
        return r

    parquet(folder / "Math" / "validation-00000-of-00001.parquet",
            [row("validation_Math_1", "<image 1> What is the area of the triangle?", "['6', '8', '10', '12']", "B"),
             row("validation_Math_2", "Which graph shows y = x^2, <image 1> or the other?", "['<image 2>', '<image 3>']",
                 "A", images=3),
             row("validation_Math_3", "Compute the limit shown in <image 1>.", "[]", "['2.5', '5/2']", qtype="open")], f)
    return folder


def mathvista(folder: Path) -> Path:
    f = {"pid": ds.Value("string"), "question": ds.Value("string"), "image": ds.Value("string"),
         "decoded_image": ds.Image(), "choices": ds.List(ds.Value("string")), "unit": ds.Value("string"),
         "precision": ds.Value("float64"), "answer": ds.Value("string"), "question_type": ds.Value("string"),
         "answer_type": ds.Value("string"), "query": ds.Value("string")}

    def row(pid, question, answer, qtype="free_form", atype="integer", choices=None, precision=None):
        return {"pid": pid, "question": question, "image": f"images/{pid}.png", "decoded_image": image(),
                "choices": choices, "unit": None, "precision": precision, "answer": answer, "question_type": qtype,
                "answer_type": atype, "query": question}

    parquet(folder / "data" / "testmini-00000-of-00001.parquet",
            [row("1", "Find the measure of angle 1.", "45°", "multi_choice", "text", ["30°", "45°", "60°"]),
             row("2", "How many bars are taller than 5?", "12"),
             row("3", "What is the slope of the line?", "1.5", atype="float", precision=1.0)], f)
    return folder


def mathverse(folder: Path) -> Path:
    f = {"sample_index": ds.Value("string"), "problem_index": ds.Value("string"), "problem_version": ds.Value("string"),
         "question": ds.Value("string"), "image": ds.Image(), "answer": ds.Value("string"),
         "question_type": ds.Value("string"), "query_wo": ds.Value("string"), "query_cot": ds.Value("string"),
         "question_for_eval": ds.Value("string")}
    choices = "As shown in the figure, DE ∥ BC. Find the size of angle CED.\nChoices:\nA:40°\nB:60°\nC:120°\nD:140°"

    def row(i, version, question, answer, qtype="multi-choice"):
        return {"sample_index": i, "problem_index": "1", "problem_version": version, "question": question,
                "image": image(), "answer": answer, "question_type": qtype, "query_wo": "", "query_cot": "",
                "question_for_eval": question}

    parquet(folder / "testmini.parquet", [row("1", "Text Dominant", choices, "D"), row("2", "Vision Only", "", "D"),
                                          row("3", "Text Lite", "Find the length of AB.", "5", "free-form")], f)
    return folder


def mathvision(folder: Path, split: str = "test") -> Path:
    f = {"id": ds.Value("string"), "question": ds.Value("string"), "options": ds.List(ds.Value("string")),
         "image": ds.Value("string"), "decoded_image": ds.Image(), "answer": ds.Value("string"),
         "solution": ds.Value("string"), "level": ds.Value("int64"), "subject": ds.Value("string")}

    def row(i, question, options, answer):
        return {"id": str(i), "question": question, "options": options, "image": f"images/{i}.jpg",
                "decoded_image": image((30 * i, 60, 90)), "answer": answer, "solution": None, "level": 2,
                "subject": "metric geometry - length"}

    parts = ["<image2>", "<image3>", "<image4>", "<image5>", "<image6>"]
    parquet(folder / "data" / f"{split}-00000-of-00001.parquet",
            [row(1, "How many squares are in the picture?\n<image1>", ["1", "2", "3", "4", "5"], "C"),
             row(2, "<image1>\nThe perimeter of the figure is 20. What is x?", [], "7"),
             # the release's structures: parts of the one merged picture named <image2>..., options A-E drawn
             # in the picture, a gold whose "\\f" a JSON writer read as a form feed
             row(3, "Which piece <image2> or <image3> completes the square in <image1>?", parts, "B"),
             row(4, "Which kite has the longest string?\n<image1>", list("ABCDE"), "D"),
             row(5, "What fraction of the square is shaded?\n<image1>", [], "\x0crac{3}{4}")], f)
    return folder


def geometry3k(folder: Path) -> Path:
    f = {"images": ds.List(ds.Image()), "problem": ds.Value("string"), "answer": ds.Value("string"),
         "id": ds.Value("int64")}
    parquet(folder / "data" / "test-00000-of-00001.parquet",
            [{"images": [image()], "problem": "<image>Find x.", "answer": "3", "id": 0},
             {"images": [image()], "problem": "<image>Find AB.", "answer": "2\\sqrt{221}", "id": 1},
             {"images": [image()], "problem": "<image>Find the area.", "answer": "\\frac{40}{3}", "id": 2}], f)
    return folder


def clevr_count(folder: Path) -> Path:
    f = {"images": ds.List(ds.Image()), "problem": ds.Value("string"), "answer": ds.Value("string")}
    q = "<image>How many items are there in the image?"
    parquet(folder / "data" / "test-00000-of-00001.parquet",
            [{"images": [image((200, 0, 0))], "problem": q, "answer": "3"},
             {"images": [image((0, 200, 0))], "problem": q, "answer": "10"},
             {"images": [image((0, 0, 200))], "problem": q, "answer": "0"}], f)
    return folder


def charxiv(folder: Path) -> Path:
    f = {"image": ds.Image(), "category": ds.Value("string"), "year": ds.Value("string"),
         "original_figure_path": ds.Value("string"), "original_id": ds.Value("string"),
         "figure_path": ds.Value("string"), "num_subplots": ds.Value("int64"),
         **{f"descriptive_q{k}": ds.Value("int64") for k in range(1, 5)},
         **{f"descriptive_a{k}": ds.Value("string") for k in range(1, 5)},
         "reasoning_q": ds.Value("string"), "reasoning_q_source": ds.Value("int64"), "reasoning_a": ds.Value("string"),
         "reasoning_a_type": ds.Value("int64")}

    def row(n, q, a, kind):
        return {"image": image((20 * n, 50, 90)), "category": "cs", "year": "2023", "original_figure_path": f"{n}.jpg",
                "original_id": str(n), "figure_path": f"images/{n}.jpg", "num_subplots": 1,
                **{f"descriptive_q{k}": k for k in range(1, 5)}, **{f"descriptive_a{k}": "x" for k in range(1, 5)},
                "reasoning_q": q, "reasoning_q_source": 1, "reasoning_a": a, "reasoning_a_type": kind}

    parquet(folder / "val.parquet",  # the release's file name for the validation split
            [row(0, "Which method has the highest accuracy?", "Ours", 1),
             row(1, "What is the value of the red line at x = 3?", "0.5", 3),
             row(2, "By how much does accuracy improve from 2019 to 2021?", "12.25", 4),
             row(3, "How many subplots show a decreasing trend?", "2", 4),
             row(4, "Which subplot has the widest spread?", "(a)", 1)], f)  # an article-only gold
    return folder


def charxiv_release(folder: Path) -> Path:
    """The release repository's layout: data/reasoning_val.json keyed by figure, images/<figure_id>.jpg."""
    rows = {"0": {"figure_id": 12, "query": "Which line peaks first?", "answer": "A", "inst_category": 1,
                  "qa_source": 3},
            "1": {"figure_id": 40, "query": "What is the largest value shown?", "answer": "7.5", "inst_category": 4,
                  "qa_source": 2}}
    (folder / "data").mkdir(parents=True)
    (folder / "images").mkdir()
    (folder / "data" / "reasoning_val.json").write_text(json.dumps(rows))
    (folder / "data" / "image_metadata_val.json").write_text(json.dumps({"12": {"category": "cs"},
                                                                          "40": {"category": "physics"}}))
    for fid in (12, 40):
        (folder / "images" / f"{fid}.jpg").write_bytes(png((fid * 5, 80, 120)))
    return folder


def logicvista(folder: Path) -> Path:
    data = folder / "LogicVista" / "data"
    (data / "images").mkdir(parents=True)
    rows = {key: {"imagename": f"{key}.png", "question": q, "answer": a, "skill": [skill],
                  "broad_capability": [broad], "specific_capability": [specific]}
            for key, q, a, skill, broad, specific in LOGICVISTA_ROWS}
    for n, row in enumerate(rows.values()):
        (data / "images" / row["imagename"]).write_bytes(png((40 * n, 90, 150)))
    (data / "dataset.json").write_text(json.dumps(rows, indent=2))
    return data


LOGICVISTA_ROWS = [  # key, question, answer, skill, broad and specific capability
    ("v1_0", "What choice (A, B, C, or D) fits the pattern?", "C", "inductive", "diagram", "sequence pattern"),
    ("v1_1", "Which choices in the image (A-D) belong to the green category?", "A, C", "inductive", "diagram",
     "grouping"),
    ("v1_2", "Which is the correct answer? Select from 1-5", "3", "deductive", "ocr", "puzzles"),
    ("v1_3", "Who is the odd-one-out? Select answers from A-I", "G", "inductive", "diagram", "odd one out"),
    ("v1_382", "Which gear turns fastest, A, B or C?", "", "mechanical", "diagram", "gears"),  # an empty gold
]


def logicvista_hub(folder: Path) -> Path:
    """The widely used hub copy: parquet, the picture itself in an `image` column (no `imagename`)."""
    f = {"question": ds.Value("string"), "answer": ds.Value("string"), "image": ds.Image(),
         "skill": ds.List(ds.Value("string")), "broad_capability": ds.List(ds.Value("string")),
         "specific_capability": ds.List(ds.Value("string"))}
    rows = [{"question": q, "answer": a, "image": image((40 * n, 90, 150)), "skill": [skill],
             "broad_capability": [broad], "specific_capability": [specific]}
            for n, (_, q, a, skill, broad, specific) in enumerate(LOGICVISTA_ROWS)]
    parquet(folder / "data" / "test-00000-of-00001.parquet", rows, f)
    return folder


def mathverse_text_only(folder: Path) -> Path:
    """The release's data/testmini_text_only.json (no image), beside the image version's testmini.json."""
    choices = "In triangle ABC, angle A = 80 and angle B = 60. Find angle C.\nChoices:\nA:20°\nB:40°\nC:60°\nD:80°"
    rows = [{"sample_index": "1", "problem_index": "1", "problem_version": "Text Only", "question": choices,
             "image": "", "answer": "(B)", "question_type": "multi-choice"},  # a gold in brackets
            {"sample_index": "2", "problem_index": "2", "problem_version": "Text Only",
             "question": "The line through (0, 1) and (1, -3): find its slope.", "image": "", "answer": "slope =-4",
             "question_type": "free-form"}]
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "testmini_text_only.json").write_text(json.dumps(rows))
    (folder / "data" / "testmini.json").write_text("[]")
    return folder / "data"


WRITERS = {"chartqa_test": chartqa, "mmmu_val": mmmu, "mathvista_testmini": mathvista,
           "mathverse_testmini": mathverse, "mathvision": mathvision,
           "mathvision_testmini": lambda folder: mathvision(folder, "testmini"), "geometry3k_test": geometry3k,
           "clevr_count": clevr_count, "charxiv_reasoning_val": charxiv, "logicvista": logicvista,
           "mathverse_text_only": mathverse_text_only}
"""Real task -> writer of a local copy in its hub schema; returns the --data-path."""
