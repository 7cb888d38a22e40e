"""The import direction of ARCHITECTURE.md, checked on the source (function-level imports too).

Layers, lowest first: types, errors and other leaves; toolspace; envs; context; orchestration;
rewards; policy; recording; serving; agent; evaluation; training. The CLI, ``*/commands.py``
and the adapters are composition roots. A module may import its own layer or lower ones.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import atlas_plugins

ROOT = Path(atlas_plugins.__file__).resolve().parent
LAYERS = ["toolspace", "envs", "context", "orchestration", "rewards", "policy", "recording", "serving", "agent",
          "evaluation", "training"]
#: Known exceptions, each with its reason.
ALLOWED = {
    # The embedded-server registry is stdlib-only data in the envs package module; moving it
    # under toolspace would make every embedded server process import the MCP client.
    ("toolspace", "envs"),
}
#: Modules exempt as a whole: compatibility shims that only re-export a moved module.
SHIMS = {"atlas_plugins.policy.serve"}  # moved to atlas_plugins.serving; `python -m` of the old path still works


def layer(module: str) -> int | None:
    """The layer index of an atlas_plugins module (None: a leaf or a composition root)."""
    parts = module.split(".")
    if parts[0] != "atlas_plugins" or len(parts) < 2:
        return None
    if parts[-1] in ("commands", "cli", "cli_support") or parts[1] in ("cli", "cli_support"):  # composition roots
        return None
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else -1  # -1: leaves (types, errors, values, ...)


def imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, node.lineno))
    return out


def test_no_module_imports_a_higher_layer():
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        module = "atlas_plugins." + ".".join(path.relative_to(ROOT).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        src = layer(module)
        if src is None or module in SHIMS:
            continue
        for target, line in imports(path):
            dst = layer(target)
            if dst is None or dst <= src:
                continue
            pair = (LAYERS[src] if src >= 0 else "leaf", LAYERS[dst])
            if pair not in ALLOWED:
                problems.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target} ({pair[0]} -> {pair[1]})")
    assert not problems, "\n".join(problems)


def test_evaluation_runs_without_importing_training():
    code = (
        "import sys\n"
        "import atlas_plugins.evaluation, atlas_plugins.evaluation.bench, atlas_plugins.evaluation.episodes\n"
        "import atlas_plugins.evaluation.suites.embedded as emb\n"
        "from atlas_plugins.evaluation.designs import design_settings\n"
        "from atlas_plugins.evaluation.episodes import summarize\n"
        "from atlas_plugins.types import Task, Trajectory\n"
        "assert design_settings('itl+ptc') == {'loading': 'itl', 'executor': 'local'}\n"
        "t = Trajectory(task_id='t', reward=1.0, reward_by_category={'TF': 1.0})\n"
        "assert summarize('itl', [t]).success == 1.0\n"
        "assert emb.check(Task(id='t', prompt='p'), t)['success']\n"
        "bad = sorted(m for m in sys.modules if m.startswith('atlas_plugins.training'))\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
