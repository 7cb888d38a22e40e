"""The embedded model's first-use conversion (GGUF -> Hugging Face folder) when several processes
start at once, as the suite's two workers and two demos on one machine do.

Covered: two processes converting into one empty cache both get a complete folder that loads.
Not covered: a conversion killed half-way (the temp-folder-and-rename path), which is older."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("transformers", reason="the conversion needs the 'train' extra (transformers)")

CHILD = """
import sys
from atlas_plugins.embedded_model import embedded_model_dir
from transformers import AutoConfig, AutoTokenizer
from safetensors import safe_open
path = embedded_model_dir(progress=False)
AutoConfig.from_pretrained(path)
AutoTokenizer.from_pretrained(path)
with safe_open(str(path / "model.safetensors"), "pt") as f:
    print(len(list(f.keys())), path)
"""


@pytest.mark.slow
def test_two_processes_converting_at_once_both_get_a_whole_model(tmp_path):
    env = {**os.environ, "ATLAS_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    tensors = {out.split()[0] for out, _ in outs}
    assert len(tensors) == 1 and int(tensors.pop()) > 100, outs  # both read the same, whole file
    left = [p.name for p in (tmp_path / "cache" / "models").iterdir() if p.name.startswith(".convert-")]
    assert not left, f"temporary conversion folders left behind: {left}"
