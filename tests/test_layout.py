"""Size rules for the package's source: short functions, modules of one concern.

A function longer than a screen hides its steps, and a long module usually holds more
than one of the concerns docs/design.md#layers gives each module. The limits are checked
here, not by review, so that a change that crosses one says so where it is made.
(The import direction between modules is checked by import-linter: `lint-imports`.)
"""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "src" / "gorun"

MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 500


def _modules() -> list[Path]:
    modules = sorted(SOURCE.glob("*.py"))
    assert modules, f"no modules found in {SOURCE}"
    return modules


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(SOURCE.parent.parent)}:{line}"


class _Functions(ast.NodeVisitor):
    """Collects every function and method, nested ones too, with its qualified name."""

    def __init__(self) -> None:
        self.found: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []
        self._scope: list[str] = []

    def _enter(self, node: ast.AST, name: str) -> None:
        self._scope.append(name)
        self.generic_visit(node)
        self._scope.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._enter(node, node.name)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.found.append((".".join([*self._scope, node.name]), node))
        self._enter(node, f"{node.name}.<locals>")

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.found.append((".".join([*self._scope, node.name]), node))
        self._enter(node, f"{node.name}.<locals>")


def _long_functions(path: Path) -> list[str]:
    """Every function or method in `path`, nested ones included, over the limit.

    A function's length runs from its `def` line to the last line of its body, so
    decorators do not count and a docstring or comment inside it does.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    offenders: list[tuple[int, str]] = []
    functions = _Functions()
    functions.visit(tree)
    for name, node in functions.found:
        assert node.end_lineno is not None
        length = node.end_lineno - node.lineno + 1
        if length > MAX_FUNCTION_LINES:
            offenders.append((node.lineno, f"{_where(path, node.lineno)} {name}: {length} lines"))
    return [text for _, text in sorted(offenders)]


def test_no_function_is_longer_than_the_limit() -> None:
    offenders = [line for path in _modules() for line in _long_functions(path)]
    assert not offenders, (
        f"{len(offenders)} function(s) longer than {MAX_FUNCTION_LINES} lines "
        "(from the def line to the end of the body); split them:\n  " + "\n  ".join(offenders)
    )


def test_no_module_is_longer_than_the_limit() -> None:
    offenders: list[str] = []
    for path in _modules():
        length = len(path.read_text(encoding="utf-8").splitlines())
        if length > MAX_MODULE_LINES:
            offenders.append(f"{_where(path, 1)}: {length} lines")
    assert not offenders, (
        f"{len(offenders)} module(s) longer than {MAX_MODULE_LINES} lines; split them "
        "along the concerns docs/design.md#layers lists:\n  " + "\n  ".join(offenders)
    )
