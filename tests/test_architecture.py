"""The shape of the code: no import cycles, layers point one way, no imports hidden in functions to
dodge a cycle, small modules, and ruff + mypy clean (their config is in pyproject.toml)."""

from __future__ import annotations

import ast
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("server", "media", "coach", "qa")
MAX_LINES = 400

# Imports inside functions that are there for a reason other than a cycle (path, module: why).
ALLOWED_LOCAL_IMPORTS: dict[tuple[str, str], str] = {
    ("server/cli.py", "server.serving"): "`livecoach token/init` must not pay ~1 s for aiortc/onnxruntime/whisper",
    ("server/cli.py", "qa.command"): "qa is a client package, loaded only for `livecoach qa`",
    ("server/practice.py", "coach.providers.whisper"): "optional model, loaded only when configured",
    ("server/practice.py", "openai"): "optional provider, loaded only when configured",
    ("coach/providers/factory.py", "coach.providers.openai_provider"): "optional provider (openai client)",
    ("coach/providers/factory.py", "coach.providers.whisper"): "optional provider (faster-whisper, heavy)",
    ("coach/providers/factory.py", "coach.providers.scripted"): "chosen by configuration",
    ("coach/providers/factory.py", "coach.providers.espeak"): "chosen by configuration",
    ("coach/providers/whisper.py", "faster_whisper"): "heavy optional dependency, loaded with the model",
    ("coach/agent.py", "coach.scenarios"): "scenarios load YAML tooling",
    ("coach/smart_turn.py", "faster_whisper.feature_extractor"): "heavy optional dependency, loaded with the model",
}
# Modules allowed over MAX_LINES (none now: the agent and analytics splits landed).
def _modules() -> dict[str, Path]:
    """Every importable module (``__main__`` modules run the CLI when imported: left out)."""
    found: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _module_level_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules imported when ``path`` is imported (TYPE_CHECKING blocks excluded)."""
    out: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full in modules:
                        out.add(full)
                    elif node.module in modules:
                        out.add(node.module)
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycles_and_layers_point_down() -> None:
    modules = _modules()
    graph = {name: _module_level_imports(path, modules) for name, path in modules.items()}
    assert _cycles(graph) == []
    # server -> media -> coach; qa is a client of all of them; nothing imports back up.
    forbidden = {"coach": ("media", "server", "qa"), "media": ("server", "qa"), "server": ("qa",)}
    wrong = [(m, dep) for m, deps in graph.items() for dep in deps
             if dep.split(".")[0] in forbidden.get(m.split(".")[0], ())]
    assert wrong == []


def test_a_cycle_would_be_found() -> None:  # the detector itself can fail
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_imports_inside_functions_to_dodge_a_cycle() -> None:
    found = []
    for pkg in ("server", "media", "coach"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom) and node.module:
                        names = [node.module]
                    elif isinstance(node, ast.Import):
                        names = [a.name for a in node.names]
                    else:
                        continue
                    found += [(rel, n) for n in names if (rel, n) not in ALLOWED_LOCAL_IMPORTS]
    assert found == [], "import at module level (or allowlist it here with the reason)"


def test_every_module_imports_in_any_order() -> None:
    names = sorted(_modules())
    seeds = [random.randrange(1 << 30) for _ in range(3)]
    procs = []
    for seed in seeds:
        order = names[:]
        random.Random(seed).shuffle(order)
        code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
        procs.append((seed, subprocess.Popen([sys.executable, "-c", code, *order], cwd=ROOT,
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    for seed, proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"seed {seed}:\n{out[-3000:]}"


def test_modules_are_small() -> None:
    big = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                big[rel] = lines
    assert big == {}


def _tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    result = _tool("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_mypy_is_clean() -> None:
    result = _tool("mypy")  # files and strictness: [tool.mypy] in pyproject.toml
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
