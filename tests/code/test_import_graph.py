"""The import graph of our own code: no cycle between modules or between stage packages,
lower layers never import upper ones, and the serving path stays off training.

The graph is built from the source (every ``import`` statement, function-local ones
included), so it stays true as the code changes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("benchmarks", "configs", "flows", "serving", "tasks")
# tasks/ packages, lowest layer first: a package imports only from packages before it
# (the top-level modules of tasks/ -- errors, s3, times, ... -- are below them all)
LAYERS = (
    "data",
    "store",
    "classifier",
    "inference",
    "registry",
    "ingest",
    "feedback",
    "drift",
    "trigger",
    "train",
    "validate",
    "release",
    "stack",
)
# what serving/ must never import, directly or through another of our modules
SERVING_FORBIDDEN_OURS = ("citeops.tasks.train", "citeops.tasks.registry", "citeops.tasks.validate")
SERVING_FORBIDDEN_LIBS = ("lightning", "optuna")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return "citeops." + ".".join(parts)


def source_files() -> Iterator[Path]:
    for folder in FOLDERS:
        yield from sorted((ROOT / folder).rglob("*.py"))


def imported_modules(path: Path, known: set[str], module_level: bool = False) -> set[str]:
    """Every module ``path`` imports (ours resolved to a module of ``known``; libraries by
    their top-level name), wherever the statement is (module level or in a function), or
    only the module-level ones (``module_level``: what importing ``path`` runs);
    annotations-only imports under ``if TYPE_CHECKING:`` are not executed and not counted."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    nodes = tree.body if module_level else ast.walk(tree)
    for node in nodes:
        if id(node) in type_only:  # ``if TYPE_CHECKING:`` imports never run
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # ``from package import module`` imports the module
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            if target.startswith("citeops."):
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)
            elif target:
                found.add(target.split(".")[0])
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = list(source_files())
    known = {module_name(path) for path in files}
    return {module_name(path): imported_modules(path, known) for path in files}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph ``edges`` as a list of nodes, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] == "tasks" and parts[2] in LAYERS:
        return parts[2]
    return None


def test_no_cycle_between_modules(graph: dict[str, set[str]]) -> None:
    ours = {m: {t for t in targets if t in graph} for m, targets in graph.items()}
    # a package's __init__ is imported by its modules implicitly: not a dependency edge
    cycle = find_cycle(ours)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_cycle_between_stage_packages(graph: dict[str, set[str]]) -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        if (stage := stage_of(module)) is None:
            continue
        packages.setdefault(stage, set()).update(
            other for t in targets if (other := stage_of(t)) and other != stage
        )
    cycle = find_cycle(packages)
    assert cycle is None, "stage-package cycle: " + " -> ".join(cycle)


def test_stages_import_only_lower_layers(graph: dict[str, set[str]]) -> None:
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if (stage := stage_of(module))
        for target in targets
        if (other := stage_of(target)) and LAYERS.index(other) > LAYERS.index(stage)
    )
    assert not upward, "a lower layer imports an upper one:\n" + "\n".join(upward)


def test_tasks_root_modules_import_no_stage(graph: dict[str, set[str]]) -> None:
    roots = [m for m in graph if m.count(".") == 2 and m.startswith("citeops.tasks.")]
    assert roots, "no top-level tasks module found"
    bad = sorted(f"{m} imports {t}" for m in roots for t in graph[m] if stage_of(t))
    assert not bad, "\n".join(bad)


def reachable(graph: dict[str, set[str]], start: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        todo.extend(graph.get(node, ()))
    return seen


def test_serving_stays_off_training(graph: dict[str, set[str]]) -> None:
    serving = {m for m in graph if m.startswith("citeops.serving")}
    assert serving
    reached = reachable(graph, serving)
    bad = sorted(
        m for m in reached if m.startswith(SERVING_FORBIDDEN_OURS) or m in SERVING_FORBIDDEN_LIBS
    )
    assert not bad, f"serving reaches {bad}"


def test_the_graph_sees_function_local_imports(tmp_path: Path) -> None:
    """The checker itself: an import inside a function is an edge like any other."""
    sample = ROOT / "tasks" / "inference" / "loading.py"
    known = {"citeops.tasks.inference.runtimes", "citeops.tasks.inference.predictor"}
    assert "citeops.tasks.inference.runtimes" in imported_modules(sample, known)
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# libraries slow enough to import that a light command (``citeops --help``, ``history``)
# must not pay for them: the only reason for a function-local import of our own modules
HEAVY = frozenset(
    "torch mlflow lightning transformers onnx onnxruntime openvino gradio great_expectations "
    "optuna prefect sklearn matplotlib sentence_transformers scipy pandas boto3 botocore "
    "sqlalchemy alembic psycopg pypdf playwright jinja2 httpx uvicorn fastapi psutil "
    "safetensors tokenizers huggingface_hub".split()
)


def heavy_on_import(module: str, edges: dict[str, set[str]]) -> set[str]:
    """The heavy libraries importing ``module`` loads, through our modules or directly."""
    return {m for m in reachable(edges, {module}) if m in HEAVY}


def test_local_imports_of_our_modules_only_keep_heavy_libraries_off_the_path(
    graph: dict[str, set[str]],
) -> None:
    """A function-local import of one of our modules is there to keep a heavy library off
    the importing module's path, never to hide a cycle or for no reason."""
    files = [p for p in source_files() if p.relative_to(ROOT).parts[0] in ("tasks", "serving")]
    known = set(graph)
    edges = {module_name(p): imported_modules(p, known, module_level=True) for p in source_files()}
    needless = []
    for path in files:
        me = module_name(path)
        mine = heavy_on_import(me, edges)
        for target in sorted(graph[me] - edges[me]):
            if target in known and not heavy_on_import(target, edges) - mine:
                needless.append(f"{me} imports {target} inside a function")
    assert not needless, "\n".join(needless)
