"""Curated exports held true (after httpx's ``tests/test_exported_members.py``).

For every library module (``data_adapters/``, ``explainers/``, ``evaluation/``, ``workspace/``) that declares
``__all__``:

- every name in ``__all__`` is bound at the module's top level (defined, assigned or imported there);
- every name that any other file of the tree imports from it (``from X import a, b``, found by walking the AST of the
  library, ``pages/``, ``app.py``, ``tests/`` and ``benchmarks/``, imports inside functions included) is in X's
  ``__all__``, unless the name is a submodule of X or is private.

Private names (a leading underscore) are *not* part of a module's contract, so importing one from another module
couples two files through a detail either may change. The rule is therefore "no private imports across modules";
the ones that exist today are listed in ``PRIVATE_IMPORTS`` each with its reason, the list may only shrink (a stale
entry fails too), and a new one fails the test.

Modules without ``__all__`` predate the curated exports: they are listed in ``WITHOUT_ALL`` (may only shrink); a new
library module must declare ``__all__``.

The check is static (no library module is imported, except to ask a module-level ``__getattr__``), so it is quick and reports every drift at once as
``module: name`` lines.
"""
from __future__ import annotations

import ast
import importlib
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest


from tests.helpers import ROOT  # noqa: E402 - the repository root, one definition
LIBRARY = ("data_adapters", "explainers", "evaluation", "workspace")
IMPORTERS = (*LIBRARY, "pages", "tests", "benchmarks")  # plus app.py

# (importing file, module, private name) -> why it is allowed for now. Prefer a public name in the owner's __all__.
PRIVATE_IMPORTS: dict[tuple[str, str, str], str] = {
    ("benchmarks/million_cases.py", "data_adapters.cohort", "_resolve"):
        "times the manifest loader's per-row path check on its own; load_manifest is its only public door",
    ("tests/data_adapters/test_bad_inputs.py", "data_adapters.cohort", "_resolve"):
        "asserts the NUL-byte message at the one place every path is resolved",
    ("tests/workspace/test_integrity.py", "data_adapters.cohort", "_table_seal"):
        "forges a table sealed exactly as the writer seals it, to show a wrong key is still caught",
    ("tests/explainers/test_uncertainty.py", "evaluation.calibration", "_log_loss"):
        "known-answer check of the per-case log loss against scikit-learn's log_loss",
    ("benchmarks/drift_windows.py", "evaluation.drift", "_sq_dists"):
        "the benchmark's naive MMD baseline reuses the product's distance kernel so only the windowing differs",
    ("tests/explainers/test_concepts.py", "explainers.concepts", "_run_scores"):
        "known-answer test of one TCAV run's scoring kernel (score, cosine, CAV accuracy)",
    ("tests/workspace/test_cli.py", "workspace.cli", "_Bars"):
        "unit test of the CLI's progress renderer, which no command exposes on its own",
    ("benchmarks/calibration/integrity.py", "workspace.report", "_html_seal"):
        "the tamper simulation splits a report into seal and body exactly as the verifier does",
    ("tests/evaluation/test_inference.py", "evaluation.inference", "_tango_statistic"):
        "known answer: Tango's score statistic at zero squared is statsmodels' McNemar chi-square",
    ("tests/calibration/test_calibration_ece.py", "workspace.report", "_with_intervals"):
        "asserts the report's own table cell for ECE (no interval, its test beside it) as the report formats it",
}

# (importing file, module, public name not in the module's __all__) -> why it is imported from there on purpose
# (a re-export checked as such); anything else imported is part of the module's contract and belongs in its __all__
OFF_LIST_IMPORTS: dict[tuple[str, str, str], str] = {}

# Library modules that do not declare __all__ yet: they predate the curated exports (their public surface is every
# public top-level name, so what others import from them cannot drift). A module that binds no public name (an empty
# package __init__) needs none. The list may only shrink.
WITHOUT_ALL: frozenset[str] = frozenset({
    "data_adapters.preprocessing", "evaluation.calibration", "evaluation.cohort_summary", "evaluation.figures",
    "evaluation.metrics", "evaluation.outcomes", "evaluation.referral", "evaluation.simulation",
    "explainers.concepts", "explainers.figures", "explainers.saliency.base", "explainers.uncertainty",
    "workspace.cli", "workspace.demo", "workspace.precompute",
})


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module
    is_package: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _python_files() -> list[Path]:
    files = [ROOT / "app.py"] if (ROOT / "app.py").is_file() else []
    for top in IMPORTERS:
        files += sorted(p for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts)
    return files


@cache
def _parsed() -> dict[str, Module]:
    out = {}
    for path in _python_files():
        name = _module_name(path)
        out[name] = Module(name, path, ast.parse(path.read_text(encoding="utf-8"), str(path)),
                           path.name == "__init__.py")
    return out


def library_modules() -> dict[str, Module]:
    return {n: m for n, m in _parsed().items() if n.split(".")[0] in LIBRARY}


def _top_level_statements(body: list[ast.stmt]):
    """Statements at module level, looking inside if / try / with blocks (not into functions or classes)."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            yield from _top_level_statements(node.body)
            yield from _top_level_statements(node.orelse)
        elif isinstance(node, ast.Try | ast.TryStar):
            yield from _top_level_statements(node.body)
            for h in node.handlers:
                yield from _top_level_statements(h.body)
            yield from _top_level_statements(node.orelse)
            yield from _top_level_statements(node.finalbody)
        elif isinstance(node, ast.With):
            yield from _top_level_statements(node.body)


def _target_names(target: ast.expr):
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for t in target.elts:
            yield from _target_names(t)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)


def bound_names(module: Module) -> set[str]:
    """Names bound at the module's top level."""
    names: set[str] = set()
    for node in _top_level_statements(module.tree.body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                names.update(_target_names(t))
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            names.update(_target_names(node.target))
        elif isinstance(node, ast.Import):
            names.update((a.asname or a.name.split(".")[0]) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.update((a.asname or a.name) for a in node.names)
        elif type(node).__name__ == "TypeAlias":  # `type X = ...` (Python 3.12)
            names.add(node.name.id)
    return names


def _literal_names(module: Module, node: ast.expr) -> list[str]:
    value = ast.literal_eval(node)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise AssertionError(f"{module.name}: __all__ must be a literal list of strings")
    return list(value)


def declared_all(module: Module) -> list[str] | None:
    """The module's ``__all__`` as a list of strings (``__all__ = [...]``, then any ``__all__ += [...]``), or None
    when it declares none."""
    names = None
    for node in _top_level_statements(module.tree.body):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            names = _literal_names(module, node.value)
        elif (isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Add) and isinstance(node.target, ast.Name)
              and node.target.id == "__all__"):
            if names is None:
                raise AssertionError(f"{module.name}: __all__ += before __all__ =")
            names += _literal_names(module, node.value)
    return names


@dataclass(frozen=True)
class Import:
    importer: str  # the importing file, relative to the root
    line: int
    module: str
    name: str


def imports_from_library() -> list[Import]:
    """Every ``from <library module> import name`` in the tree (imports inside functions included)."""
    lib = library_modules()
    found = []
    for m in _parsed().values():
        rel = m.path.relative_to(ROOT).as_posix()
        for node in ast.walk(m.tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in lib and node.module != m.name:
                found += [Import(rel, node.lineno, node.module, a.name) for a in node.names if a.name != "*"]
    return found


def _is_submodule(module: str, name: str) -> bool:
    return f"{module}.{name}" in _parsed()


def _lazy(module: Module, name: str) -> bool:
    """A name served by a module-level ``__getattr__`` (PEP 562, e.g. a re-export that would otherwise make an
    import cycle): the module is imported and asked, the one place this check runs library code."""
    if "__getattr__" not in bound_names(module) or not module.path.is_relative_to(ROOT):
        return False
    try:
        return hasattr(importlib.import_module(module.name), name)
    except ImportError:
        return False


def drift() -> list[str]:
    """Every way the tree disagrees with the declared exports, one ``module: name (why)`` line each."""
    lib = library_modules()
    problems = []
    exports = {n: declared_all(m) for n, m in lib.items()}
    for name, names in sorted(exports.items()):
        if names is None:
            continue
        bound = bound_names(lib[name])
        problems += [f"{name}: {n} (in __all__ but not defined in the module)" for n in names
                     if n not in bound and not _is_submodule(name, n) and not _lazy(lib[name], n)]
        problems += [f"{name}: {n} (listed twice in __all__)" for n in sorted({n for n in names if names.count(n) > 1})]
    private_seen = set()
    off_list_seen = set()
    missing: dict[tuple[str, str], list[str]] = {}
    for imp in imports_from_library():
        names = exports[imp.module]
        if _is_submodule(imp.module, imp.name):
            continue
        if imp.name.startswith("_"):
            key = (imp.importer, imp.module, imp.name)
            private_seen.add(key)
            if key not in PRIVATE_IMPORTS:
                problems.append(f"{imp.module}: {imp.name} (private, imported by {imp.importer}:{imp.line}; "
                                f"make it public and export it, or add it to PRIVATE_IMPORTS with a reason)")
            continue
        if names is not None and imp.name not in names:
            key = (imp.importer, imp.module, imp.name)
            if key in OFF_LIST_IMPORTS:
                off_list_seen.add(key)
                continue
            missing.setdefault((imp.module, imp.name), []).append(f"{imp.importer}:{imp.line}")
    for (m, n), sites in missing.items():
        more = f" and {len(sites) - 3} more" if len(sites) > 3 else ""
        problems.append(f"{m}: {n} (not in __all__; imported by {', '.join(sorted(sites)[:3])}{more})")
    problems += [f"{m}: {n} (OFF_LIST_IMPORTS entry for {f} is stale: that import is gone or the name is exported; "
                 f"remove the entry)" for (f, m, n) in sorted(set(OFF_LIST_IMPORTS) - off_list_seen)]
    problems += [f"{m}: {n} (PRIVATE_IMPORTS entry for {f} is stale: that import is gone; remove the entry)"
                 for (f, m, n) in sorted(set(PRIVATE_IMPORTS) - private_seen)]
    without = {n for n, names in exports.items()
               if names is None and any(not b.startswith("_") for b in bound_names(lib[n]))}
    problems += [f"{n}: __all__ (a library module without __all__; declare its public names)"
                 for n in sorted(without - WITHOUT_ALL)]
    problems += [f"{n}: __all__ (WITHOUT_ALL entry is stale: the module declares __all__ or is gone; remove it)"
                 for n in sorted(WITHOUT_ALL - without)]
    return sorted(set(problems))


def test_exports_match_what_the_tree_imports():
    problems = drift()
    assert not problems, f"{len(problems)} export drift(s):\n" + "\n".join(problems)


# --- the checker itself catches what it should ----------------------------------------------------------------------

def _fake(name: str, source: str, package: bool = False) -> Module:
    return Module(name, ROOT / (name.replace(".", "/") + ".py"), ast.parse(source), package)


def test_bound_names_sees_guarded_definitions_and_not_locals():
    m = _fake("evaluation.fake", "import numpy as np\nfrom a import b as c\nX = 1\n"
                                 "try:\n    import scipy\nexcept ImportError:\n    scipy = None\n"
                                 "if X:\n    def f(): y = 2\nclass K: z = 3\n")
    assert bound_names(m) == {"np", "c", "X", "scipy", "f", "K"}


def test_a_missing_name_in_all_is_reported(monkeypatch):
    fake = _fake("evaluation.fake", '__all__ = ["here", "gone"]\ndef here(): pass\n')
    real = dict(_parsed())
    monkeypatch.setattr(sys.modules[__name__], "_parsed", lambda: {**real, fake.name: fake})
    problems = drift()
    assert "evaluation.fake: gone (in __all__ but not defined in the module)" in problems
    assert not any(p.startswith("evaluation.fake: here") for p in problems)


def test_an_import_missing_from_all_and_a_private_import_are_reported(monkeypatch):
    owner = _fake("evaluation.fake", '__all__ = ["public"]\ndef public(): pass\ndef other(): pass\n'
                                     'def _secret(): pass\n')
    user = _fake("pages.fake_page", "def f():\n    from evaluation.fake import public, other, _secret\n")
    real = dict(_parsed())
    monkeypatch.setattr(sys.modules[__name__], "_parsed",
                        lambda: {**real, owner.name: owner, user.name: user})
    problems = drift()
    assert "evaluation.fake: other (not in __all__; imported by pages/fake_page.py:2)" in problems
    assert any(p.startswith("evaluation.fake: _secret (private, imported by pages/fake_page.py:2") for p in problems)
    assert not any(p.startswith("evaluation.fake: public") for p in problems)


def test_all_extended_with_plus_equals_is_read_whole():
    m = _fake("evaluation.fake", '__all__ = ["a"]\ndef a(): pass\ndef b(): pass\n__all__ += ["b"]\n')
    assert declared_all(m) == ["a", "b"]


@pytest.mark.parametrize("source", ['__all__ = "one"', "__all__ = [name]", '__all__ += ["late"]'])
def test_a_non_literal_all_is_refused(source):
    with pytest.raises((AssertionError, ValueError)):
        declared_all(_fake("evaluation.fake", source))
