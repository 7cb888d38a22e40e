"""Seeded, verified task generator for the embedded toolspace (the learning loop's training data).

``generate_tasks(seed)`` samples tasks from templates at three difficulty levels:

* **1** — one tool call on one server; short, literal prompts a 135M model can follow
  ("What is 37 multiplied by 12? Use the math server.");
* **2** — two calls, usually look-up-then-act on one server ("Find the note 'Banana bread'
  and tag it 'dessert'.");
* **3** — chains across two or three servers (contacts -> calendar -> email, shop -> bank,
  travel -> weather).

Read tasks are checked with ``task.answer`` (``metadata["answer_match"] = "contains"``); write
tasks with ``task.expected_state`` (a post-episode read call whose result must contain a subset).
Every task carries ``metadata["expected_tools"]``, ``metadata["reference_solution"]`` (the exact
calls that solve it), ``metadata["template"]``, ``metadata["hint_server"]`` (list of servers)
and ``metadata["env_seed"]`` (the world seed the servers must run with: ``Toolspace.default(seed=...)``).

**Solvability filter** (as in the paper): each candidate is run against the real servers
in-process (``build(env_seed)`` behind an in-memory MCP ``Client``, the full request path) in a
fresh episode of its own. A task is kept only when every reference call succeeds, the answer
appears in the call results, and each expected end state does *not* hold before the calls but
holds after them (judged with the same subset matcher the ``rules`` judge uses). Failures are
dropped and counted (:attr:`GenerationReport.dropped`); no unverified task is emitted.

**Split.** Train / held-out is a fixed function of (template, parameters), independent of the
seed's sampling order and of the paraphrase chosen: tasks of the templates in
:data:`HELDOUT_TEMPLATES` (one per level, never in train) are always held out; every other task
is held out when ``stable_hash(template, parameters) % 100 < 15``. Quotas per split and level
(45% / 35% / 20%) are filled in sampling order, so the held-out set measures both new parameter
combinations of seen templates and generalisation to unseen templates.

Same seed (and ``env_seed``) -> byte-identical JSONL. The default set ships as
``atlas_plugins/envs/data/tasks_seed0.jsonl``; :func:`load_default_tasks` reads it.

The package: :mod:`~atlas_plugins.envs.taskgen.language` (calls, drafts, the template registry,
the world view, word pools), :mod:`~atlas_plugins.envs.taskgen.templates_l1` / ``_l2`` / ``_l3``
(the templates), :mod:`~atlas_plugins.envs.taskgen.verify` (the solvability filter),
:mod:`~atlas_plugins.envs.taskgen.generate` (sampling, split, quotas) and
:mod:`~atlas_plugins.envs.taskgen.io` (task files). Every name is importable from here.
"""

from __future__ import annotations

# The template modules register themselves on import; keep the order l1, l2, l3 (it fixes the
# registry order, hence the bytes of the generated files).
from atlas_plugins.envs.taskgen import templates_l1, templates_l2, templates_l3  # noqa: F401  (registration)
from atlas_plugins.envs.taskgen.generate import (
    HELDOUT_HASH_PERCENT,
    LEVEL_SHARES,
    GenerationReport,
    agenerate,
    generate,
    generate_tasks,
    split_of,
    unseen_train_tasks,
)
from atlas_plugins.envs.taskgen.io import (
    DATA_DIR,
    DEFAULT_TASKS_PATH,
    dumps_jsonl,
    load_default_tasks,
    load_tasks,
    world_seed,
    write_jsonl,
)
from atlas_plugins.envs.taskgen.language import (
    HELDOUT_TEMPLATES,
    TEMPLATES,
    Call,
    Draft,
    Template,
    TemplateFn,
    World,
    num,
    state,
    template,
)
from atlas_plugins.envs.taskgen.verify import _Runner, state_holds, verify_draft

__all__ = [
    "Call",
    "DATA_DIR",
    "DEFAULT_TASKS_PATH",
    "Draft",
    "GenerationReport",
    "HELDOUT_HASH_PERCENT",
    "HELDOUT_TEMPLATES",
    "LEVEL_SHARES",
    "TEMPLATES",
    "Template",
    "TemplateFn",
    "World",
    "_Runner",
    "agenerate",
    "dumps_jsonl",
    "generate",
    "generate_tasks",
    "load_default_tasks",
    "load_tasks",
    "num",
    "split_of",
    "state",
    "world_seed",
    "state_holds",
    "template",
    "unseen_train_tasks",
    "verify_draft",
    "write_jsonl",
]
