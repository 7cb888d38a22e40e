"""A third-party plugin installed as its own distribution (examples/custom_rubric_plugin)
registers a rubric provider through the ``atlas_plugins`` entry-point group; broken entry
points and name conflicts are reported by name without taking the others down.

The example is pip-installed (non-editable, no deps) into a temporary target directory put on
``sys.path``/``PYTHONPATH``, so the shared venv is not modified."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import atlas_plugins as atlas
from atlas_plugins.plugins import PluginConflictError, PluginManager

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "custom_rubric_plugin"


def _write_broken_dist(target: Path) -> None:
    """A real (hand-written) installed distribution whose entry-point module raises on import."""
    (target / "atlas_broken_example.py").write_text("raise RuntimeError('this plugin is broken on purpose')\n")
    info = target / "atlas_broken_example-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: atlas-broken-example\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[atlas_plugins]\nbroken_example = atlas_broken_example\n")
    (info / "RECORD").write_text("")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    # Build isolation: pip fetches hatchling from the configured index into a throw-away build
    # env; without it the venv itself would need hatchling.
    try:
        import hatchling  # noqa: F401

        isolation = ["--no-build-isolation"]
    except ImportError:
        isolation = []
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", *isolation,
         "--quiet", "--target", str(target), str(EXAMPLE)],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    _write_broken_dist(target)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    atlas.reset_plugins()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        for mod in ("atlas_custom_rubric", "atlas_broken_example"):
            sys.modules.pop(mod, None)
        importlib.invalidate_caches()
        atlas.reset_plugins()


def test_entry_point_is_visible(installed):
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="atlas_plugins")}
    assert eps["keyword_rubric"].dist.name == "atlas-custom-rubric"
    assert "broken_example" in eps


def test_describe_lists_provider_with_distribution_and_reports_broken(installed):
    with pytest.warns(RuntimeWarning, match="broken_example"):
        pm = PluginManager()
    desc = pm.describe()
    rows = [r for r in desc["rubric_providers"] if r["name"] == "keyword"]
    assert rows == [{"name": "keyword", "plugin": "keyword_rubric", "distribution": "atlas-custom-rubric"}]
    broken = [b for b in desc["broken"] if b["plugin"] == "broken_example"]
    assert broken and broken[0]["distribution"] == "atlas-broken-example"
    assert "this plugin is broken on purpose" in broken[0]["error"]
    # the rest keep working
    assert {"static", "template", "llm"} <= {r["name"] for r in desc["rubric_providers"]}
    assert pm.create("judges", "rules").name == "rules"


def test_provider_used_by_name(installed):
    prov = atlas.get_rubric_provider("keyword")
    r = prov.rubric_for({"id": "t", "prompt": "Summarise", "metadata": {"keywords": ["revenue", "churn"]}})
    assert r.source == "keyword" and [c.check.values for c in r.check_criteria()] == [["revenue"], ["churn"]]
    # and it plugs into the reward function like a built-in
    fn = atlas.rubric_reward(provider="keyword")
    out = fn(["q"], ["Revenue grew while churn fell."], task=[{"id": "t", "prompt": "Summarise", "metadata": {"keywords": ["revenue", "churn"]}}])
    assert out == [1.0]


def test_cli_plugins_json_sees_it(installed):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    proc = subprocess.run([sys.executable, "-m", "atlas_plugins.cli", "plugins", "--json"],
                          capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert {"name": "keyword", "plugin": "keyword_rubric", "distribution": "atlas-custom-rubric"} in data["rubric_providers"]
    assert any(b["plugin"] == "broken_example" for b in data["broken"])


def test_two_plugins_one_name_is_an_error_naming_both():
    def make(label):
        class P:
            @atlas.hookimpl
            def atlas_register_rubric_providers(self, register):
                register("dup-provider", lambda: label)
        return P()

    pm = PluginManager(load_entry_points=False)
    pm.register(make("a"), name="plugin_a", distribution="dist-alpha")
    pm.register(make("b"), name="plugin_b", distribution="dist-beta")
    with pytest.raises(PluginConflictError) as e:
        pm.create("rubric_providers", "dup-provider")
    assert "dist-alpha" in str(e.value) and "dist-beta" in str(e.value)
    assert pm.create("rubric_providers", "template").name == "template"  # others unaffected
