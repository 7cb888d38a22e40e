"""Token accounting for loading policies.

Counts are taken the way the policy model will see them: the policy's system text as the
system message plus a user task message, rendered through the tokenizer's own chat template
(``apply_chat_template``). The default tokenizer is the embedded SmolLM2's; any Hugging Face
tokenizer path or id that resolves offline works. Tokenizers are cached per path because
loading one costs far more than counting.

transformers is imported lazily (``import atlas_plugins`` must not pull it in).
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any

from atlas_plugins.context.prompts import DEFAULT_USER_MESSAGE
from atlas_plugins.types import TaskLike, TokenizerLike

if TYPE_CHECKING:
    from atlas_plugins.context.base import EpisodeContext, LoadingPolicy
    from atlas_plugins.types import ToolCatalog

#: A tokenizer, or the path/id of one to load (``None``: the embedded SmolLM2's).
TokenizerSpec = TokenizerLike | str | os.PathLike[str] | None

#: Task text used when counting an initial context without a real task.
PLACEHOLDER_TASK = "Find the relevant tools and complete the user's request."


@functools.lru_cache(maxsize=8)
def _load_tokenizer_cached(key: str) -> TokenizerLike:
    from atlas_plugins.embedded_model import load_tokenizer

    return load_tokenizer(None if key == "" else key)


def get_tokenizer(name_or_path: str | os.PathLike[str] | None = None) -> TokenizerLike:
    """The (cached) tokenizer for ``name_or_path``; ``None`` means the embedded SmolLM2."""
    return _load_tokenizer_cached("" if name_or_path is None else str(name_or_path))


def _resolve(tokenizer: TokenizerSpec) -> TokenizerLike:
    if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
        return get_tokenizer(tokenizer)
    return tokenizer


def count_text_tokens(text: str, tokenizer: TokenizerSpec = None) -> int:
    """Tokens of plain ``text`` (no special tokens, no chat template)."""
    tok = _resolve(tokenizer)
    return len(tok(text, add_special_tokens=False)["input_ids"])


def _ids_len(out: Any) -> int:  # Any: the output's shape differs across transformers versions
    # transformers 5 returns a BatchEncoding (dict-like) by default; older versions a list.
    if isinstance(out, dict) or hasattr(out, "keys"):
        ids = out["input_ids"]
    else:
        ids = out
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    return len(ids)


def count_chat_tokens(
    system: str, user: str, tokenizer: TokenizerSpec = None, *, add_generation_prompt: bool = True
) -> int:
    """Tokens of ``[system, user]`` rendered through the tokenizer's chat template.

    Tokenizers without a chat template fall back to plain text with a blank line between
    the two messages (and say so only through the smaller count; there is nothing to render).
    """
    tok = _resolve(tokenizer)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    if getattr(tok, "chat_template", None):
        out = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
        return _ids_len(out)
    return count_text_tokens(f"{system}\n\n{user}", tok)


def initial_context_tokens(
    policy: LoadingPolicy | EpisodeContext,
    toolspace: ToolCatalog,
    task: TaskLike = None,
    tokenizer: TokenizerSpec = None,
) -> int:
    """Tokens of the context a policy shows before the first model turn.

    ``policy`` is a :class:`~atlas_plugins.context.base.LoadingPolicy` (or an already started
    :class:`~atlas_plugins.context.base.EpisodeContext`). ``task`` is a
    :class:`~atlas_plugins.types.Task`, a prompt string or ``None`` (a neutral placeholder).
    """
    ctx: EpisodeContext = policy.start_episode(toolspace, task) if hasattr(policy, "start_episode") else policy
    prompt = getattr(task, "prompt", None) or (task if isinstance(task, str) else PLACEHOLDER_TASK)
    return count_chat_tokens(ctx.system_prompt(), DEFAULT_USER_MESSAGE.format(task=prompt), tokenizer)
