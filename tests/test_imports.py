"""No import circles in src/voicetune: every module's imports, function-level ones included (a
circle through a function-level import is a circle that merely waits for its call), form a graph
without cycles. A room imports only rooms below it (DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import voicetune

ROOT = Path(voicetune.__file__).parent


def module_names() -> dict[str, Path]:
    """voicetune.x.y -> its file (a package is its __init__.py)."""
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = ["voicetune", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The voicetune modules `name` imports anywhere in its file, `if TYPE_CHECKING:` blocks
    aside (they never run). `from pkg import sub` names the submodule when it is one."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    names = module_names()
    return {name: imported_modules(name, path, set(names)) for name, path in names.items()}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None (depth-first search, colours)."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in colour and (circle := visit(nxt)):
                return circle
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if node not in colour and (circle := visit(node)):
            return circle
    return None


def test_the_circle_finder_names_a_circle():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    # cli/train.py imports the training loop inside its command function only.
    assert "voicetune.train.loop" in graph["voicetune.cli.train"]


def test_no_module_of_voicetune_imports_in_a_circle():
    circle = find_circle(import_graph())
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_studio_and_the_speech_server_import_nothing_of_each_other():
    """Two faces side by side: what both need (the loopback check) lives below them."""
    graph = import_graph()
    faces = ("voicetune.studio", "voicetune.serve")
    crossing = [
        f"{module} -> {imported}"
        for module, imports in graph.items()
        for face in faces
        if module == face or module.startswith(face + ".")
        for imported in imports
        for other in faces
        if other != face and (imported == other or imported.startswith(other + "."))
    ]
    assert crossing == []
