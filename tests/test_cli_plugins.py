"""``atlas_register_commands``: third-party plugins add ``atlas <command>``, as the built-in areas do.

The plugins here are real installed-distribution layouts (a module plus a ``.dist-info`` with
``entry_points.txt``) put on ``PYTHONPATH`` of an ``atlas`` subprocess, or plugin objects given
to ``atlas.register_plugin`` in process.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import atlas_plugins as atlas
from atlas_plugins.plugins import BUILTIN_COMMAND_MODULES, PluginManager

REPO = Path(__file__).resolve().parents[1]

HELLO = """
import atlas_plugins
import typer
from atlas_plugins.cli_support import print_json

@atlas_plugins.hookimpl
def atlas_register_commands(app):
    @app.command("hello")
    def hello(name: str = typer.Option("world", "--name"), as_json: bool = typer.Option(False, "--json")) -> None:
        \"\"\"Say hello (from a third-party plugin).\"\"\"
        if as_json:
            print_json({"hello": name})
        else:
            print(f"hello {name}")
"""

BROKEN_HOOK = """
import atlas_plugins

@atlas_plugins.hookimpl
def atlas_register_commands(app):
    @app.command("half-made")
    def half_made() -> None:
        pass
    raise RuntimeError("cannot build my commands")
"""

RIVAL = """
import atlas_plugins

@atlas_plugins.hookimpl
def atlas_register_commands(app):
    @app.command("hello")
    def hello() -> None:
        print("the other hello")

    @app.command("train")
    def train() -> None:
        print("not the real train")
"""


def _dist(root: Path, dist: str, ep_name: str, module: str, body: str) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[atlas_plugins]\n{ep_name} = {module}\n")


def _atlas(site: Path, *args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "atlas_plugins.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


MISSPELT = """
import atlas_plugins

@atlas_plugins.hookimpl
def atlas_register_commands(cli):  # the hook's argument is `app`
    pass
"""


@pytest.fixture()
def site(tmp_path: Path) -> Path:
    _dist(tmp_path, "atlas-hello", "hello", "atlas_hello_plugin", HELLO)
    _dist(tmp_path, "atlas-broken-commands", "broken_commands", "atlas_broken_commands", BROKEN_HOOK)
    _dist(tmp_path, "atlas-broken-import", "broken_import", "atlas_broken_import", "raise ImportError('nope')\n")
    _dist(tmp_path, "atlas-misspelt", "misspelt", "atlas_misspelt_plugin", MISSPELT)
    return tmp_path


def test_entry_point_plugin_adds_a_command_and_broken_ones_do_not_take_the_cli_down(site: Path) -> None:
    out = _atlas(site, "hello", "--name", "Ada")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello Ada"
    # Both broken plugins are named (with their distribution) on stderr; the command still ran.
    assert "'broken_commands' from distribution 'atlas-broken-commands'" in out.stderr
    assert "cannot build my commands" in out.stderr
    assert "'broken_import' from distribution 'atlas-broken-import'" in out.stderr
    assert "'misspelt' from distribution 'atlas-misspelt'" in out.stderr  # pluggy's validation error

    as_json = _atlas(site, "hello", "--name", "Ada", "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout) == {"hello": "Ada"}

    listed = _atlas(site, "--help")
    assert listed.returncode == 0 and "hello" in listed.stdout
    assert "half-made" not in listed.stdout  # a plugin that raised adds nothing, not half its commands

    data = json.loads(_atlas(site, "plugins", "--json").stdout)
    broken = {b["plugin"]: b for b in data["broken"]}
    assert broken["broken_commands"]["distribution"] == "atlas-broken-commands"
    assert "RuntimeError: cannot build my commands" in broken["broken_commands"]["error"]
    assert broken["broken_import"]["distribution"] == "atlas-broken-import"
    assert "commands" not in data  # `atlas plugins --json` keeps its shape


def test_disabling_a_command_plugin_removes_its_command(site: Path) -> None:
    out = _atlas(site, "hello", env_extra={"ATLAS_DISABLE_PLUGINS": "atlas-hello"})
    assert out.returncode != 0 and "No such command 'hello'" in out.stderr


def test_duplicate_command_names_fail_naming_both_plugins(site: Path) -> None:
    _dist(site, "atlas-rival", "rival", "atlas_rival_plugin", RIVAL)
    for command in ("hello", "train"):
        out = _atlas(site, command)
        assert out.returncode == 1, (command, out.stdout, out.stderr)
        text = " ".join((out.stdout + out.stderr).split())
        assert f"command '{command}' is registered by more than one plugin" in text
        assert "'rival' (distribution 'atlas-rival')" in text
    assert "'hello' (distribution 'atlas-hello')" in " ".join(_atlas(site, "hello").stderr.split())
    assert "'atlas_plugins.training.commands' (distribution 'atlas-plugins')" in " ".join(
        _atlas(site, "train").stderr.split()
    )
    as_json = _atlas(site, "hello", "--json")
    assert as_json.returncode == 1 and "more than one plugin" in json.loads(as_json.stdout)["error"]
    # Unrelated commands keep working.
    assert _atlas(site, "tasks", "--help").returncode == 0


def test_runtime_plugin_adds_a_command_in_process() -> None:
    class Hello:
        @atlas.hookimpl
        def atlas_register_commands(self, app: typer.Typer) -> None:
            @app.command("hello")
            def hello(name: str = "world") -> None:
                print(f"hello {name}")

    pm = PluginManager(load_entry_points=False)
    pm.register(Hello(), name="hello-runtime", distribution="my-dist")
    app = typer.Typer()

    @app.command("plugins")
    def plugins() -> None:
        pass

    assert pm.add_commands(app) == {}
    result = CliRunner().invoke(app, ["hello", "--name", "Ada"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "hello Ada"
    names = {i.name for i in app.registered_commands} | {g.name for g in app.registered_groups}
    assert {"hello", "context", "retrieve", "exec", "rubric", "train", "demo", "eval", "bench", "tasks"} <= names


def test_register_plugin_reaches_the_real_cli_app() -> None:
    code = textwrap.dedent(
        """
        import atlas_plugins as atlas

        class Hello:
            @atlas.hookimpl
            def atlas_register_commands(self, app):
                @app.command("hello")
                def hello():
                    print("hello from register_plugin")

        atlas.register_plugin(Hello(), name="hello")
        from atlas_plugins.cli import main
        main()
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    out = subprocess.run([sys.executable, "-c", code, "hello"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello from register_plugin"


def test_builtin_areas_are_command_plugins_and_do_not_import_the_cli() -> None:
    pm = PluginManager(load_entry_points=False)
    pm.add_commands(typer.Typer())
    for module in BUILTIN_COMMAND_MODULES:
        assert pm.pm.has_plugin(module), module
        assert pm.distributions[module] == "atlas-plugins"
        path = REPO / (module.replace(".", "/") + ".py")
        imported = {
            node.module if isinstance(node, ast.ImportFrom) else alias.name
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        }
        assert "atlas_plugins.cli" not in imported, f"{module} imports atlas_plugins.cli (an import cycle)"
