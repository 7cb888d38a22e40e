"""The plugin system: registration, lookup errors, conflicts, broken plugins, entry points, env vars."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import atlas_plugins as atlas
from atlas_plugins.plugins import PluginConflictError, PluginManager, UnknownComponentError
from atlas_plugins.toolspace import config_from_dict

PAGED = Path(__file__).parent / "servers" / "paged_server.py"


class Thing:
    def __init__(self, **options):
        self.options = options


class GoodPlugin:
    @atlas.hookimpl
    def atlas_register_retrievers(self, register):
        register("test-retriever", Thing)

    @atlas.hookimpl
    def atlas_register_judges(self, register):
        register("test-judge", Thing)


class RivalPlugin:
    @atlas.hookimpl
    def atlas_register_retrievers(self, register):
        register("test-retriever", Thing)


class ExplodingPlugin:
    @atlas.hookimpl
    def atlas_register_retrievers(self, register):
        raise RuntimeError("boom while registering")


@pytest.fixture()
def pm():
    return PluginManager(load_entry_points=False)


def test_register_and_create_with_options(pm):
    pm.register(GoodPlugin(), name="good", distribution="good-dist")
    made = pm.create("retrievers", "test-retriever", k=3)
    assert isinstance(made, Thing) and made.options == {"k": 3}
    rows = {r["name"]: r for r in pm.describe()["retrievers"]}
    assert rows["test-retriever"]["plugin"] == "good"
    assert rows["test-retriever"]["distribution"] == "good-dist"


def test_unknown_name_lists_registered_and_closest(pm):
    pm.register(GoodPlugin(), name="good", distribution="good-dist")
    with pytest.raises(UnknownComponentError) as err:
        pm.get("judges", "test-judg")
    msg = str(err.value)
    assert "Did you mean 'test-judge'" in msg and "Registered:" in msg


def test_two_plugins_same_name_names_both_distributions(pm):
    pm.register(GoodPlugin(), name="good", distribution="good-dist")
    pm.register(RivalPlugin(), name="rival", distribution="rival-dist")
    with pytest.raises(PluginConflictError) as err:
        pm.get("retrievers", "test-retriever")
    assert "good-dist" in str(err.value) and "rival-dist" in str(err.value)
    # The unrelated judge from the same plugin still works.
    assert isinstance(pm.create("judges", "test-judge"), Thing)
    assert any(r.get("conflict") for r in pm.describe()["retrievers"])


def test_plugin_that_raises_is_reported_and_others_keep_working(pm):
    pm.register(GoodPlugin(), name="good", distribution="good-dist")
    pm.register(ExplodingPlugin(), name="exploding", distribution="bad-dist")
    with pytest.warns(RuntimeWarning, match="exploding"):
        reg = pm.registry("retrievers")
    assert "test-retriever" in reg.entries
    broken = pm.describe()["broken"]
    assert broken and broken[0]["plugin"] == "exploding" and broken[0]["distribution"] == "bad-dist"


def test_veto_hook_blocks_tool_call_with_clear_observation(pm):
    class Veto:
        @atlas.hookimpl
        def atlas_before_tool_call(self, server, tool, arguments):
            return "writes are disabled" if tool == "echo" else None

    pm.register(Veto(), name="veto")
    config = config_from_dict({"servers": {"paged": {"command": sys.executable, "args": [str(PAGED)]}}})
    ts = atlas.Toolspace(config, plugin_manager=pm)
    with ts:
        blocked = ts.call("paged", "echo", {"text": "hi"})
        allowed = ts.call("paged", "filler_0", {})
    assert not blocked.ok and blocked.error_type == "vetoed"
    assert "blocked by policy: writes are disabled" in blocked.error
    assert allowed.ok


def _make_distribution(root: Path, dist: str, ep_name: str, module: str, body: str) -> None:
    """A real installed-distribution layout (module + .dist-info with entry_points.txt)."""
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[atlas_plugins]\n{ep_name} = {module}\n")


def _describe_in_subprocess(path: Path, env_extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    env.update({"PYTHONPATH": str(path), **env_extra})
    out = subprocess.run(
        [sys.executable, "-m", "atlas_plugins.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture()
def site(tmp_path):
    _make_distribution(
        tmp_path,
        "atlas-good-plugin",
        "good",
        "atlas_good_plugin",
        """
        import atlas_plugins
        class Judge:
            pass
        @atlas_plugins.hookimpl
        def atlas_register_judges(register):
            register("good-judge", Judge)
        """,
    )
    _make_distribution(tmp_path, "atlas-broken-plugin", "broken", "atlas_broken_plugin", "raise ImportError('nope')\n")
    return tmp_path


def test_entry_point_plugins_load_and_broken_one_is_reported(site):
    data = _describe_in_subprocess(site, {})
    judges = {r["name"]: r for r in data["judges"]}
    assert judges["good-judge"]["distribution"] == "atlas-good-plugin"
    assert judges["good-judge"]["plugin"] == "good"
    assert any(b["plugin"] == "broken" and b["distribution"] == "atlas-broken-plugin" for b in data["broken"])


def test_env_vars_restrict_and_disable_plugins(site):
    only_broken = _describe_in_subprocess(site, {"ATLAS_PLUGINS": "broken"})
    assert "good-judge" not in {r["name"] for r in only_broken["judges"]}
    disabled = _describe_in_subprocess(site, {"ATLAS_DISABLE_PLUGINS": "atlas-broken-plugin"})
    assert not any(b["plugin"] == "broken" for b in disabled["broken"])
    assert "good-judge" in {r["name"] for r in disabled["judges"]}
