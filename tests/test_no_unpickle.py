"""Guard: no project code may unpickle. Uploads are untrusted; a pickle runs code when loaded.

Scans the syntax tree of every project .py file (so a message that *mentions* torch.load is
fine) and fails on ``torch.load`` without ``weights_only=True``, ``pickle.load(s)`` (however
imported or aliased) and any ``allow_pickle=True``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED_DIRS = ("hub", "workers", "client", "bench", "tests", "scripts")
SKIPPED_PARTS = {".venv", "node_modules", "build", "__pycache__", ".git"}
#: module -> functions in it that unpickle.
UNPICKLERS = {
    "pickle": {"load", "loads", "Unpickler"},
    "_pickle": {"load", "loads", "Unpickler"},
    "cPickle": {"load", "loads", "Unpickler"},
    "dill": {"load", "loads"},
    "joblib": {"load"},
}


def project_files() -> list[Path]:
    files = sorted(ROOT.glob("*.py"))
    for folder in SCANNED_DIRS:
        files.extend(sorted((ROOT / folder).rglob("*.py")))
    this = Path(__file__).resolve()
    return [f for f in files if f.resolve() != this and not SKIPPED_PARTS & set(f.parts)]


def _is_true(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def violations(source: str, filename: str = "<source>") -> list[str]:
    """Each unpickling call in ``source`` as ``file:line: what``."""
    tree = ast.parse(source, filename)
    modules: dict[str, str] = {}  # local name -> module it refers to
    functions: dict[str, tuple[str, str]] = {}  # local name -> (module, function)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                modules[alias.asname or alias.name.split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                functions[alias.asname or alias.name] = (node.module, alias.name)

    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        where = f"{filename}:{node.lineno}"
        if any(k.arg == "allow_pickle" and _is_true(k.value) for k in node.keywords):
            found.append(f"{where}: allow_pickle=True")
        target: tuple[str, str] | None = None
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            target = (modules.get(func.value.id, func.value.id), func.attr)
        elif isinstance(func, ast.Name) and func.id in functions:
            target = functions[func.id]
        if target is None:
            continue
        module, name = target
        root = module.split(".")[0]
        if root == "torch" and name == "load":
            safe = any(k.arg == "weights_only" and _is_true(k.value) for k in node.keywords)
            if not safe:
                found.append(f"{where}: torch.load without weights_only=True")
        elif name in UNPICKLERS.get(root, set()):
            found.append(f"{where}: {module}.{name}")
    return found


def test_no_project_code_unpickles() -> None:
    files = project_files()
    assert any(f.parts[-2] == "workers" for f in files), "scanned nothing: wrong root?"
    found: list[str] = []
    for path in files:
        found.extend(violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT))))
    assert found == [], "Unpickling is forbidden (uploads are untrusted):\n" + "\n".join(found)


@pytest.mark.parametrize(
    "snippet",
    [
        "import torch\ntorch.load(f)",
        "import torch\ntorch.load(f, weights_only=False)",
        "import torch as t\nt.load(f, map_location='cpu')",
        "from torch import load\nload(f)",
        "import pickle\npickle.loads(data)",
        "import pickle as pk\npk.load(fh)",
        "from pickle import load as unpickle\nunpickle(fh)",
        "import numpy as np\nnp.load(f, allow_pickle=True)",
        "import joblib\njoblib.load(path)",
    ],
)
def test_the_guard_catches_unpickling(snippet: str) -> None:
    assert violations(snippet)


@pytest.mark.parametrize(
    "snippet",
    [
        "import torch\ntorch.load(f, weights_only=True)",
        "msg = 'convert with torch.load(f) then save_file'",
        "import numpy as np\nnp.load(f)",
        "import json\njson.loads(text)",
        "from safetensors.torch import load\nload(data)",
    ],
)
def test_the_guard_allows_safe_code(snippet: str) -> None:
    assert violations(snippet) == []
