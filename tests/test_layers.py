"""The core's layers: each module imports only from its own layer or below, the import graph has no
cycle, and no module imports another module's private names.

The graph is read from the source (``ast``), imports inside functions included, so a lazy import
cannot hide an upward edge. A new module of ``harness/`` must be given a layer here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Bottom to top. A module may import modules of its own layer and of the layers below it.
LAYERS: list[tuple[str, set[str]]] = [
    ("contracts", {"__init__", "errors", "options", "config", "hookspecs", "registry", "plugins", "blame",
                   "task_api", "envs", "tasks", "stopping", "safe_files"}),
    ("mechanics", {"advantage", "batch", "ppo", "scheme", "scheme_config", "value_norm", "distributions",
                   "stats", "results", "checkpoint", "provenance", "evaluation", "task_check", "memory",
                   "devices", "run_lock", "tracking", "executor", "threads", "replay", "video", "sequences", "joint"}),
    ("run", {"policy", "rollout", "assembly", "best_policy", "continuation", "run_setup", "trainer", "references"}),
    ("commands", {"arms", "attribution", "dispatch", "bench", "tuning", "sweep_file", "study", "objective", "sweep_outputs", "sweep",
                  "comparability", "verdicts", "report", "tables", "plot", "eval_run", "conformance", "cli"}),
]


def import_graph(package: Path, name: str = "harness") -> tuple[dict[str, set[str]], list[str]]:
    """``module -> the package's modules it imports`` (anywhere in its source), and every import of a
    private name (``_x``) from another module, as ``"importer: module._x"``."""
    modules = {p.stem for p in package.glob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    private: list[str] = []
    for path in sorted(package.glob("*.py")):
        me = path.stem
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] == name and len(parts) > 1:
                        graph[me].add(parts[1])
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                parts = node.module.split(".")
                if parts[0] != name:
                    continue
                if len(parts) == 1:  # from harness import x: a module, or a name of the package
                    for alias in node.names:
                        graph[me].add(alias.name if alias.name in modules else "__init__")
                    continue
                graph[me].add(parts[1])
                private += [f"{me}: {parts[1]}.{a.name}" for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__") and parts[1] != me]
    for deps in graph.values():
        deps.discard("")
    return {m: deps - {m} for m, deps in graph.items()}, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def upward(graph: dict[str, set[str]], layers: list[tuple[str, set[str]]]) -> list[str]:
    """Every import of a module from a higher layer, as ``"a (layer) imports b (higher layer)"``."""
    level = {m: (i, name) for i, (name, members) in enumerate(layers) for m in members}
    return [f"{a} ({level[a][1]}) imports {b} ({level[b][1]})"
            for a in sorted(graph) for b in sorted(graph[a])
            if a in level and b in level and level[b][0] > level[a][0]]


def test_every_core_module_has_a_layer():
    graph, _ = import_graph(ROOT / "harness")
    layered = set().union(*(members for _, members in LAYERS))
    assert sorted(set(graph) - layered) == [], "give each new module of harness/ a layer in LAYERS"
    assert sorted(layered - set(graph)) == [], "LAYERS names modules that no longer exist"


def test_the_core_has_no_cycle_no_upward_import_and_no_private_import():
    graph, private = import_graph(ROOT / "harness")
    assert cycles(graph) == []
    assert upward(graph, LAYERS) == []
    assert private == []


def test_the_core_imports_no_plugin_and_plugins_import_no_private_core_name():
    graph, _ = import_graph(ROOT / "harness", name="harness_plugins")
    assert {m: deps for m, deps in graph.items() if deps} == {}, "the core must not import built-in plugins"
    for folder in (ROOT / "plugins", ROOT / "plugins" / "examples" / "harness_examples"):
        core = {p.stem for p in (ROOT / "harness").glob("*.py")}
        for path in folder.glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "harness":
                    names = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                    assert names == [], f"{path.name} imports private names {names} from {node.module}"
                    assert (node.module or "harness").split(".")[-1] in core | {"harness"}


def _package(tmp_path: Path, sources: dict[str, str]) -> Path:
    pkg = tmp_path / "harness"
    pkg.mkdir()
    for name, text in sources.items():
        (pkg / f"{name}.py").write_text(text)
    return pkg


@pytest.mark.parametrize("sources, what", [
    # a cycle closed by an import inside a function
    ({"errors": "", "trainer": "from harness import errors\nimport harness.eval_run\n",
      "eval_run": "def f():\n    from harness.trainer import Trainer\n"}, "cycle"),
    # a mechanics module reaching up to a command
    ({"errors": "", "results": "from harness.plot import figure\n", "plot": "import harness.results\n"}, "upward"),
    ({"errors": "", "checkpoint": "", "continuation": "from harness.checkpoint import _reason\n"}, "private"),
])
def test_the_checks_catch_a_deliberate_cycle_upward_import_and_private_import(tmp_path, sources, what):
    graph, private = import_graph(_package(tmp_path, sources))
    found = {"cycle": cycles(graph), "upward": upward(graph, LAYERS), "private": private}
    assert found[what], f"the {what} check missed it"
    if what == "cycle":
        assert found["cycle"] == [["eval_run", "trainer"]]
    if what == "upward":
        assert found["upward"] == ["results (mechanics) imports plot (commands)"]
        assert found["cycle"] == [["plot", "results"]]
    if what == "private":
        assert found["private"] == ["continuation: checkpoint._reason"]


def test_earlier_import_paths_of_the_plugin_contract_still_work():
    """Plugins written against earlier versions import the task contract from harness.envs and the
    batch from harness.ppo: the same objects as their new homes."""
    from harness import batch, envs, options, ppo, task_api
    for name in ("ActionSpace", "LocalCopiesTask", "PettingZooVecTask", "StepResult", "VecTask", "episode_seed",
                 "make_vec_task"):
        assert getattr(envs, name) is getattr(task_api, name)
    for name in ("Option", "coerce", "resolve_options"):
        assert getattr(envs, name) is getattr(options, name)
    assert ppo.Batch is batch.Batch


def test_a_scheme_that_sets_the_earlier_flag_name_keeps_its_meaning():
    from harness.scheme import OnPolicyScheme, core_advantages

    class Old(OnPolicyScheme):
        state_critic = False

    class New(OnPolicyScheme):
        core_advantages = False

    class Plain:
        pass

    class Computed(OnPolicyScheme):
        @property
        def state_critic(self):
            return False

    plain_old = Plain()
    plain_old.state_critic = False
    assert core_advantages(object.__new__(Computed)) is False
    assert [core_advantages(object.__new__(k)) for k in (OnPolicyScheme, Old, New)] == [True, False, False]
    assert core_advantages(Plain()) is True and core_advantages(plain_old) is False
