"""The adapter examples and their benchmark parse their command lines (the full runs take
minutes each and are measured by ``benchmarks/examples.py``; what they exercise is tested in
test_langgraph_adapter.py and test_dspy_adapter.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "script, expected",
    [
        ("examples/langgraph_in_place.py", "--grpo-steps"),
        ("examples/dspy_react.py", "--eval-warm"),
        ("benchmarks/examples.py", "--only"),
    ],
)
def test_script_help(script, expected):
    proc = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert expected in proc.stdout


def test_benchmark_names_an_unknown_example():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/examples.py"), "--only", "crewai"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "crewai" in proc.stderr
