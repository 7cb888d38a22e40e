"""Structural checks of the code base (AST only, fast): where things are allowed to live."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TAGS = ("<tool_call>", "</tool_call>")


def _python_files(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts)


def _docstring_nodes(tree: ast.AST) -> set[int]:
    """ids of the Constant nodes that are docstrings (module, class, function)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                out.add(id(body[0].value))
    return out


def test_tool_call_tags_are_spelled_in_one_module():
    """The ``<tool_call>`` format has one home, :mod:`atlas_plugins.wire.toolcall`; every other
    module builds and reads calls through it (string constants and f-string parts count,
    docstrings do not)."""
    offenders: list[str] = []
    for path in _python_files("atlas_plugins", "adapters"):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        docs = _docstring_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                if any(tag in node.value for tag in TAGS):
                    offenders.append(f"{rel}:{node.lineno}: {node.value[:60]!r}")
    allowed = "atlas_plugins/wire/toolcall.py"
    assert [o for o in offenders if not o.startswith(allowed + ":")] == []
    assert any(o.startswith(allowed + ":") for o in offenders)  # the check does see the tags
