"""The package's shape: rooms that import only downwards, no import circles, functions of a readable size, and
eval/ and data_recipes/ installed inside the sapo_vl namespace."""
import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "sapo_vl"


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(REPO).with_suffix("").parts)
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def import_graph() -> dict[str, set[str]]:
    """module → the sapo_vl modules it imports, at the top or inside functions alike."""
    modules = {_module_name(p): p for p in LIB.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                for a in node.names:  # `from pkg import module` imports the module
                    deps.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_planted_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_in_the_library():
    graph = import_graph()
    assert "sapo_vl.train" in graph and "sapo_vl.run" in graph["sapo_vl.train"]  # the scan sees real edges
    assert cycles(graph) == []


ROOMS = [
    ("foundations", ["sapo_vl", "sapo_vl.suggest", "sapo_vl.typed_config", "sapo_vl.dist", "sapo_vl.algorithms",
                     "sapo_vl.models.tiny", "sapo_vl.models.__init__", "sapo_vl.data.record", "sapo_vl.launch",
                     "sapo_vl.data.images", "sapo_vl.verifiers", "sapo_vl.engines.base", "sapo_vl.engines.__init__"]),
    ("config, models, data", ["sapo_vl.losses", "sapo_vl.runlog", "sapo_vl.config", "sapo_vl.config_cli",
                              "sapo_vl.batch_plan", "sapo_vl.metrics", "sapo_vl.models", "sapo_vl.data",
                              "sapo_vl.export"]),
    ("forwards and plans", ["sapo_vl.sampling", "sapo_vl.logprobs", "sapo_vl.ds", "sapo_vl.memplan", "sapo_vl.routing",
                            "sapo_vl.shared_prefix", "sapo_vl.packing", "sapo_vl.evaluation", "sapo_vl.weights",
                            "sapo_vl.placement"]),
    ("engines and phases", ["sapo_vl.engines", "sapo_vl.rollout", "sapo_vl.update"]),
    ("the loop and its commands", ["sapo_vl.run", "sapo_vl.train", "sapo_vl.demo", "sapo_vl.compare", "sapo_vl.sft",
                                   "sapo_vl.cli", "sapo_vl.split"]),
]
"""The library's rooms, lowest first: a module imports from its own room or the rooms below it, never above
(`__init__` entries name a package module itself where its package sits in another room)."""


def room_of(module: str) -> int:
    """Index in ROOMS of the longest entry that is `module` or a package above it."""
    best, level = -1, -1
    for i, (_, entries) in enumerate(ROOMS):
        for e in entries:
            exact = e.removesuffix(".__init__")
            hit = module == exact if e.endswith(".__init__") or e == "sapo_vl" else \
                module == e or module.startswith(e + ".")
            if hit and len(e) > best:
                best, level = len(e), i
    return level


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} ({ROOMS[room_of(m)][0]}) imports {d} ({ROOMS[room_of(d)][0]})"
            for m, deps in sorted(graph.items()) for d in sorted(deps) if room_of(d) > room_of(m)]


def test_every_module_has_a_room_and_imports_only_downwards():
    graph = import_graph()
    assert [m for m in graph if room_of(m) < 0] == []
    assert room_of("sapo_vl.engines.hf_engine") == 3 and room_of("sapo_vl.engines") == 0  # packages vs modules
    assert upward_imports(graph) == []
    planted = {**graph, "sapo_vl.dist": graph["sapo_vl.dist"] | {"sapo_vl.train"}}  # the check sees a bad arrow
    assert upward_imports(planted) == ["sapo_vl.dist (foundations) imports sapo_vl.train (the loop and its commands)"]


MAX_LINES, MAX_PARAMS = 80, 8


def oversized_functions(root: Path) -> list[str]:
    """Functions over MAX_LINES lines or with more than MAX_PARAMS parameters (self / cls not counted)."""
    out = []
    for path in sorted(root.rglob("*.py")):
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = n.args
                params = [x for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
                params += [x for x in (a.vararg, a.kwarg) if x is not None]
                lines = n.end_lineno - n.lineno + 1
                if lines > MAX_LINES or len(params) > MAX_PARAMS:
                    out.append(f"{path.relative_to(root.parent)}:{n.lineno} {n.name}: {lines} lines, {len(params)} params")
    return out


def test_no_function_is_longer_than_80_lines_or_takes_more_than_8_parameters(tmp_path):
    (tmp_path / "big.py").write_text("def f(a, b, c, d, e, f, g, h, i):\n    pass\n\n\ndef g(self):\n" +
                                     "    x = 1\n" * 80)
    assert [x.split(" ", 1)[1] for x in oversized_functions(tmp_path)] == ["f: 2 lines, 9 params",
                                                                          "g: 81 lines, 0 params"]
    # the library, and the task and recipe files installed inside its namespace
    assert [f for root in (LIB, REPO / "eval", REPO / "data_recipes") for f in oversized_functions(root)] == []


def test_library_never_imports_eval_or_data_recipes_by_their_folder_names():
    for path in LIB.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            for n in names:
                assert n.split(".")[0] not in ("eval", "data_recipes"), f"{path}: imports {n}"


def test_pyproject_lists_every_package_folder():
    import tomllib

    conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {_module_name(p.parent / "__init__.py") for p in LIB.rglob("__init__.py")}
    assert set(conf["packages"]) == folders | {"sapo_vl.eval_tasks", "sapo_vl.recipes"}
    assert conf["package-dir"] == {"sapo_vl.eval_tasks": "eval", "sapo_vl.recipes": "data_recipes"}


@pytest.mark.slow
def test_wheel_carries_tasks_and_recipes_inside_the_namespace(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                          str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = tmp_path.glob("sapo_vl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "sapo_vl/eval_tasks/mathvista_testmini.py" in names
    assert "sapo_vl/recipes/synthetic_color.py" in names and "sapo_vl/recipes/_template.py" in names
    assert not [n for n in names if n.split("/")[0] in ("eval", "data_recipes")]
