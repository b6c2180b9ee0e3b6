"""Every cuda-python runtime name the TensorRT backend uses exists, and calls pass the number of
arguments the bindings take: checked by reading our code (AST) against the installed cuda-python, so
API drift is caught without a GPU (the calls themselves need a driver)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from helpers import REPO

MODULES = [REPO / "sdk" / "backends" / "tensorrt.py", REPO / "sdk" / "cuda.py"]
ROOTS = {"rt", "self.rt"}  # names our code binds to the cuda runtime module


def _uses(path: Path) -> list[tuple[int, list[str], int | None]]:
    """(line, attribute chain after the root, positional-argument count if called) for rt.X[.Y] uses."""
    tree = ast.parse(path.read_text())
    calls = {id(n.func): len(n.args) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain, cur = [], node
        while isinstance(cur, ast.Attribute):
            chain.insert(0, cur.attr)
            cur = cur.value
        root = ast.unparse(cur)
        if isinstance(cur, ast.Attribute) or root not in ROOTS:
            if not (isinstance(cur, ast.Name) and cur.id == "self" and chain[:1] == ["rt"]):
                continue
            chain = chain[1:]
        if chain and (root in ROOTS or chain):
            out.append((node.lineno, chain, calls.get(id(node))))
    # keep only the longest chain per position (ast.walk also yields the inner attributes)
    longest: dict[tuple[int, str], tuple[int, list[str], int | None]] = {}
    for line, chain, n in out:
        key = (line, chain[0])
        if key not in longest or len(chain) > len(longest[key][1]):
            longest[key] = (line, chain, n)
    return list(longest.values())


def find_problems(modules: list[Path], rt) -> tuple[int, list[str]]:
    problems, checked = [], 0
    for path in modules:
        for line, chain, nargs in _uses(path):
            obj = rt
            for i, name in enumerate(chain):
                if not hasattr(obj, name):
                    problems.append(f"{path.name}:{line}: cuda runtime has no {'.'.join(chain[: i + 1])}")
                    break
                obj = getattr(obj, name)
            else:
                checked += 1
                if nargs is not None and callable(obj) and not isinstance(obj, type):
                    try:
                        sig = inspect.signature(obj)
                    except (TypeError, ValueError):
                        continue
                    try:
                        sig.bind(*range(nargs))
                    except TypeError as e:
                        problems.append(f"{path.name}:{line}: {'.'.join(chain)} called with {nargs} arguments: {e}")
    return checked, problems


def test_cuda_runtime_names_and_arity():
    rt = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed (pip install cuda-python)")
    checked, problems = find_problems(MODULES, rt)
    assert checked >= 15, f"only {checked} cuda runtime uses found: is the scan still matching our code?"
    assert not problems, "\n".join(problems)


def test_the_check_catches_wrong_names_and_arity(tmp_path):
    rt = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed")
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f(self, rt):\n    self.rt.cudaStreamCreat()\n    rt.cudaMemcpyKind.cudaMemcpyHostToDevic\n"
        "    self.rt.cudaEventRecord(1, 2, 3)\n    self.rt.cudaStreamCreate()\n"
    )
    checked, problems = find_problems([bad], rt)
    text = "\n".join(problems)
    assert "cudaStreamCreat" in text and "cudaMemcpyHostToDevic" in text
    assert "cudaEventRecord called with 3" in text
    assert checked == 2
