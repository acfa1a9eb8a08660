"""The architecture, checked by walking every module's imports (stdlib `ast`): the pure core
imports no layer above it and no I/O driver; sources and destinations do not import each other,
the runtime or the CLI; no two modules import each other round a circle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "conduitd"

# Modules the pure core must not import: the layers above it, and I/O (drivers, sockets, files,
# processes, event loops, logging handlers).
CORE_FORBIDS = ("conduitd.runtime", "conduitd.destinations", "conduitd.sources", "conduitd.ops",
                "conduitd.commands", "conduitd.cli", "conduitd.dlq_sinks", "conduitd.testing",
                "asyncio", "asyncpg", "sqlite3", "confluent_kafka", "aiokafka", "aiohttp", "httpx", "socket",
                "subprocess", "os", "pathlib", "shutil", "tempfile", "logging.handlers", "prometheus_client",
                "opentelemetry")
CONNECTOR_FORBIDS = ("conduitd.runtime", "conduitd.cli", "conduitd.commands", "conduitd.testing")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """The nodes under `if TYPE_CHECKING:` (imported for annotations, never run)."""
    skipped: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(ast.walk(child))
    return skipped


def imports(name: str, path: Path, known: dict[str, Path], *, typing: bool = True) -> Iterator[str]:
    """Every module `name` imports, at any depth of its code (type-checking imports too unless
    `typing` is False); `from package import module` counts as importing that module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    skipped = set() if typing else _type_checking_only(tree)
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield full if full in known else base


def within(module: str, prefixes: tuple[str, ...]) -> str | None:
    return next((p for p in prefixes if module == p or module.startswith(p + ".")), None)


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {m for m in imports(name, path, known)} for name, path in known.items()}


def test_the_core_imports_no_layer_above_it_and_no_io() -> None:
    wrong = [f"{name} imports {target}" for name, targets in graph().items() if name.startswith("conduitd.core")
             for target in sorted(targets) if within(target, CORE_FORBIDS)]
    assert not wrong, "\n".join(wrong)


def test_running_the_core_loads_only_the_core_and_the_error_tree() -> None:
    """What importing a core module runs, followed through every module it imports (type-checking
    imports aside): the core, `conduitd.errors` and the packages above them, nothing else of
    conduitd (the config, for one, fetches secrets from the environment and files)."""
    known = modules()
    allowed = ("conduitd.core", "conduitd.errors")
    wrong = []
    for start in (n for n in known if n.startswith("conduitd.core")):
        todo, seen = [start], {start}
        while todo:
            name = todo.pop()
            for target in imports(name, known[name], known, typing=False):
                if target in known and target not in seen:
                    if not within(target, allowed) and target not in ("conduitd",):
                        wrong.append(f"{start} runs {name}, which imports {target}")
                    seen.add(target)
                    todo.append(target)
    assert not wrong, "\n".join(sorted(set(wrong)))


ABOVE = {  # a layer, and the layers above it that it may not import
    "conduitd.ops": ("conduitd.runtime", "conduitd.commands", "conduitd.cli", "conduitd.sources",
                     "conduitd.destinations"),
    "conduitd.runtime": ("conduitd.commands", "conduitd.cli"),
    "conduitd.commands": ("conduitd.cli",),
}


def test_no_layer_imports_one_above_it() -> None:
    wrong = [f"{name} imports {target}" for name, targets in graph().items() for layer, above in ABOVE.items()
             if within(name, (layer,)) for target in sorted(targets) if within(target, above)]
    assert not wrong, "\n".join(wrong)


def test_sources_and_destinations_stay_apart_and_below_the_runtime() -> None:
    wrong = []
    for name, targets in graph().items():
        for kind, other in (("conduitd.sources", "conduitd.destinations"),
                            ("conduitd.destinations", "conduitd.sources")):
            if within(name, (kind,)):
                wrong += [f"{name} imports {t}" for t in sorted(targets) if within(t, (*CONNECTOR_FORBIDS, other))]
    assert not wrong, "\n".join(wrong)


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every circle a depth-first walk of `edges` meets."""
    seen: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        seen[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if seen.get(target) == 1:
                found.append([*stack[stack.index(target):], target])
            elif target not in seen:
                visit(target)
        stack.pop()
        seen[node] = 2

    for node in sorted(edges):
        if node not in seen:
            visit(node)
    return found


def test_no_import_circle() -> None:
    """Importing `a.b.c` runs `a/__init__` and `a/b/__init__` too: those count as imports, except
    a module's own packages (already being imported when it runs)."""
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, targets in graph().items():
        edges[name] = set()
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        for target in (t for t in targets if t in known):
            parts = target.split(".")
            edges[name] |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)} - {name} - own
    found = circles(edges)
    assert not found, "\n".join(" -> ".join(c) for c in found)


def test_the_walk_sees_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert circles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("source", ["import conduitd.destinations.sqlite\n", "from conduitd.runtime import commit\n"])
def test_the_walk_sees_a_forbidden_import(tmp_path: Path, source: str) -> None:
    """The check itself: a core module importing a destination or the runtime is caught."""
    known = modules()
    path = tmp_path / "bad.py"
    path.write_text(source)
    found = set(imports("conduitd.core.bad", path, known))
    assert any(within(t, CORE_FORBIDS) for t in found)
