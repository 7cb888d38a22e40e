"""The core install must not import torch or transformers (they are the `train` extra)."""

import subprocess
import sys

import pytest


def test_core_import_does_not_pull_torch_or_transformers():
    code = (
        "import sys, atlas_plugins, atlas_plugins.cli\n"
        "from atlas_plugins.plugins import get_plugin_manager\n"
        "get_plugin_manager().describe()\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'sentence_transformers') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"core import pulled in heavy modules: {out.stdout.strip()}"


def test_public_api_names_exist():
    import atlas_plugins as atlas

    for name in (
        "Toolspace",
        "get_retriever",
        "get_loading_policy",
        "get_executor",
        "get_rubric_provider",
        "get_judge",
        "get_aggregator",
        "hookimpl",
    ):
        assert hasattr(atlas, name), name
    assert callable(atlas.Toolspace.default) and callable(atlas.Toolspace.from_config)


@pytest.mark.slow
def test_quickstart_example_runs():
    """examples/quickstart.py is what the README points newcomers at: it must keep working."""
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "tools on" in out.stdout and "Did you mean 'add'" in out.stdout
    assert "itl:" in out.stdout and "eager:" in out.stdout
