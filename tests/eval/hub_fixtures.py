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

    parquet(folder / "data" / f"{split}-00000-of-00001.parquet",
            [row(1, "How many squares are in the picture?\n<image1>", ["1", "2", "3", "4", "5"], "C"),
             row(2, "<image1>\nThe perimeter of the figure is 20. What is x?", [], "7")], f)
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

    parquet(folder / "data" / "validation-00000-of-00001.parquet",
            [row(0, "Which method has the highest accuracy?", "Ours", 1),
             row(1, "What is the value of the red line at x = 3?", "0.5", 3),
             row(2, "By how much does accuracy improve from 2019 to 2021?", "12.25", 4),
             row(3, "How many subplots show a decreasing trend?", "2", 4)], f)
    return folder


def logicvista(folder: Path) -> Path:
    data = folder / "LogicVista" / "data"
    (data / "images").mkdir(parents=True)
    rows = {"v1_0": {"imagename": "v1_0.png", "question": "What choice (A, B, C, or D) fits the pattern?",
                     "answer": "C", "skill": ["inductive"], "capability": ["diagram"]},
            "v1_1": {"imagename": "v1_1.png", "question": "Which choices in the image (A-D) belong to the green category?",
                     "answer": "A, C", "skill": ["inductive"], "capability": ["diagram"]},
            "v1_2": {"imagename": "v1_2.png", "question": "Which is the correct answer? Select from 1-5",
                     "answer": "3", "skill": ["deductive"], "capability": ["ocr"]},
            "v1_3": {"imagename": "v1_3.png", "question": "Who is the odd-one-out? Select answers from A-I",
                     "answer": "G", "skill": ["inductive"], "capability": ["diagram"]}}
    for n, row in enumerate(rows.values()):
        (data / "images" / row["imagename"]).write_bytes(png((40 * n, 90, 150)))
    (data / "dataset.json").write_text(json.dumps(rows, indent=2))
    return data


WRITERS = {"chartqa_test": chartqa, "mmmu_val": mmmu, "mathvista_testmini": mathvista,
           "mathverse_testmini": mathverse, "mathvision": mathvision,
           "mathvision_testmini": lambda folder: mathvision(folder, "testmini"), "geometry3k_test": geometry3k,
           "clevr_count": clevr_count, "charxiv_reasoning_val": charxiv, "logicvista": logicvista}
"""Real task -> writer of a local copy in its hub schema; returns the --data-path."""
