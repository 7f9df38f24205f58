"""logicvista on the release's data/ folder: dataset.json keyed "v1_0", ..., pictures in data/images/."""
from __future__ import annotations

import json


def write(folder, kit, rows):
    (folder / "images").mkdir(parents=True)
    for key, row in rows.items():
        (folder / "images" / f"{key}.png").write_bytes(kit.png())
    (folder / "dataset.json").write_text(json.dumps(
        {key: {"imagename": f"{key}.png", "skill": ["spatial"], "broad_capability": ["diagram"],
               "specific_capability": ["rotation"], **row} for key, row in rows.items()}))


def test_logicvista(tmp_path, kit):
    write(tmp_path, kit, {"v1_0": {"question": "Which shape (A-E) is the rotated one?", "answer": "E"},
                          "v1_1": {"question": "Which two (A-D) match?", "answer": "B, D"},
                          "v1_2": {"question": "Which one?", "answer": ""},
                          "v1_3": {"question": "Which one?", "answer": "maybe"}})
    records, skips = kit.run("logicvista", "test", path=str(tmp_path))
    kit.check(records, "logicvista", "test")
    assert [(r.id, r.verifier, r.answer) for r in records] == [("logicvista/test/v1_0", "choice", "E"),
                                                               ("logicvista/test/v1_1", "math", "B, D")]
    assert records[0].verifier_params == {"num_options": 5}
    assert records[0].meta["broad_capability"] == ["diagram"] and records[0].meta["specific_capability"] == ["rotation"]
    assert [(s.id, s.reason.split(":")[0]) for s in skips] == [("logicvista/test/v1_2", "empty answer"),
                                                               ("logicvista/test/v1_3", "bad answer")]
