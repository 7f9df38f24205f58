"""Every registered verifier is tested, documented and dispatchable; bad names and parameters fail clearly."""
import importlib.util
import inspect
from pathlib import Path

import pytest

import sapo_vl.verifiers as verifiers
from sapo_vl.verifiers import VERIFIERS, VerifierConfigError, VerifierResult, param_names, score

HERE = Path(__file__).parent


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"_registry_check_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(VERIFIERS))
def test_every_verifier_has_a_table_of_at_least_30_cases(name):
    path = HERE / f"test_{name}.py"
    assert path.exists(), f"{name}: no {path.name}"
    cases = _load(path).CASES
    assert len(cases) >= 30, f"{name}: only {len(cases)} cases"
    assert all(isinstance(c[-1], str) and c[-1] for c in cases), f"{name}: every case says where it comes from"


@pytest.mark.parametrize("name", sorted(VERIFIERS))
def test_every_verifier_is_documented(name):
    fn = VERIFIERS[name]
    module = inspect.getmodule(fn)
    assert module.__doc__ and module.__doc__.strip().startswith(f"`{name}`"), f"{name}: module docstring"
    assert fn.__doc__ and fn.__doc__.strip(), f"{name}: function docstring"
    for param in param_names(name):
        assert f"{param}:" in fn.__doc__, f"{name}: parameter {param!r} is not documented"
    assert f"| {name}" in verifiers.__doc__, f"{name}: missing from the package table"


@pytest.mark.parametrize("name", sorted(VERIFIERS))
def test_every_verifier_takes_response_and_answer_then_keywords(name):
    params = list(inspect.signature(VERIFIERS[name]).parameters.values())
    assert [p.name for p in params[:2]] == ["response", "answer"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[2:])


@pytest.mark.parametrize("bad,closest", [("maths", "math"), ("choise", "choice"), ("counts", "count"),
                                         ("numerical", "numeric"), ("fromat", "format")])
def test_unknown_name_names_the_closest(bad, closest):
    with pytest.raises(ValueError, match=f"did you mean '{closest}'"):
        score(bad, "x", "y")


@pytest.mark.parametrize("name,bad,closest", [("numeric", "tolerence", "tolerance"), ("choice", "choice", "choices"),
                                              ("format", "styl", "style"), ("math", "timout", "timeout")])
def test_unknown_param_names_the_closest(name, bad, closest):
    with pytest.raises(VerifierConfigError, match=f"did you mean '{closest}'"):
        score(name, "x", "1", **{bad: 1})


def test_result_checks_its_score():
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            VerifierResult(bad, "x")
    assert VerifierResult(1, "ok").extracted is None


def test_no_module_imports_the_package_it_belongs_to():
    # batch.py used to import `score` from the package, so the package had to import batch last
    import ast

    package = Path(verifiers.__file__).parent
    submodules = {p.stem for p in package.glob("*.py")} - {"__init__"}
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None:
                names = {a.name for a in node.names}
                assert names <= submodules, f"{path.name} imports {names - submodules} from the package itself"
        if path.name == "__init__.py":
            first_def = min((n.lineno for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))),
                            default=10**9)
            late = [n.lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) and n.lineno > first_def]
            assert not late, f"__init__.py imports after its definitions (lines {late})"


def test_public_names_come_from_the_registry():
    from sapo_vl.verifiers import batch, registry

    assert verifiers.score is registry.score is batch.score
    assert verifiers.VERIFIERS is registry.VERIFIERS
