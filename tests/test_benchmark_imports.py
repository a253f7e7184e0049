"""The harness's modules form no import circle and use no other module's private names."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tune_ext" / "benchmark"
PREFIX = "tune_ext.benchmark."


def _imports(path: Path):
    """(module imported, names taken) for every import in ``path``, in functions too."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []


def _graph():
    modules = {p.stem: p for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    return {name: {m[len(PREFIX):] for m, _ in _imports(path) if m.startswith(PREFIX)}
            for name, path in modules.items()}


def _cycle(graph):
    """One import circle as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    return next((c for n in sorted(graph) if n not in state and (c := visit(n))), None)


def test_the_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circles_in_the_harness_even_inside_functions():
    graph = _graph()
    assert {"runner", "summary", "tasks", "reference", "record", "cluster", "budget"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    # the run record is read by the summary and writers, which never import the run loop
    assert "runner" not in graph["summary"] | graph["curves"] | graph["record"]
    assert "tasks" not in graph["reference"]


def test_no_private_names_imported_across_harness_modules_or_by_the_scripts():
    for path in [*PACKAGE.glob("*.py"), *(PACKAGE.parents[1] / "scripts").glob("*.py")]:
        for module, names in _imports(path):
            if module.startswith("tune_ext"):
                assert not [n for n in names if n.startswith("_")], (path.name, module, names)
