"""Rubric GRPO end to end on the embedded model and servers: real TRL steps, the trajectory log,
checkpoint + resume without lost or repeated steps, the warm start, and the train CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="training tests need the 'train' extra")

# Loads the embedded model (or trains): left out of `make test-fast`.
pytestmark = pytest.mark.slow

import atlas_plugins as atlas  # noqa: E402
from atlas_plugins.envs.taskgen import load_default_tasks  # noqa: E402
from atlas_plugins.errors import ConfigError  # noqa: E402
from atlas_plugins.training.config import AtlasGRPOConfig  # noqa: E402
from atlas_plugins.training.evaluate import Scorer  # noqa: E402
from atlas_plugins.training.trainer import AtlasTrainer  # noqa: E402
from atlas_plugins.training.warmstart import demonstrations, sft_rows, warm_start  # noqa: E402


@pytest.fixture(scope="module")
def ts():
    with atlas.Toolspace.default(servers=["math", "units", "notes", "weather"]) as space:
        yield space


@pytest.fixture(scope="module")
def small_tasks():
    # One-server level-1 tasks on small servers keep prompts short: CPU training cost scales with tokens.
    keep = {"math", "units"}
    return [t for t in load_default_tasks("train") if t.difficulty == 1 and set(t.servers) <= keep][:2]


def tiny(out: Path, **kw):
    settings = dict(
        max_steps=2,
        per_device_train_batch_size=2,
        num_generations=2,
        max_turn_tokens=8,
        max_completion_length=64,
        max_tool_calls=1,
        max_turns=2,
        save_steps=1,
        logging_steps=1,
    )
    settings.update(kw)
    return AtlasGRPOConfig.cpu_demo(str(out), **settings)


def _log_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_grpo_steps_log_and_resume_without_lost_or_repeated_steps(tmp_path, ts, small_tasks):
    out = tmp_path / "run"
    trainer = AtlasTrainer(tiny(out), toolspace=ts, tasks=small_tasks)
    trainer.train()
    assert trainer.trainer.state.global_step == 2
    logged = [h for h in trainer.trainer.state.log_history if "reward" in h]
    assert len(logged) == 2
    for key in ("atlas/success", "atlas/context_tokens", "atlas/turns", "atlas/tool_errors", "atlas/parse_failures"):
        assert key in logged[0], key
    lines = _log_lines(out / "trajectories.jsonl")
    assert len(lines) == 2 * 2 and {ln["step"] for ln in lines} == {0, 1}
    assert all(ln["reward"] is not None and "TF" in ln["by_category"] for ln in lines)
    assert (out / "checkpoint-2").is_dir()

    # "Kill" after step 2, then continue to step 3 from the checkpoint.
    resumed = AtlasTrainer(tiny(out, max_steps=3), toolspace=ts, tasks=small_tasks)
    resumed.train(resume=True)
    assert resumed.trainer.state.global_step == 3
    steps = [ln["step"] for ln in _log_lines(out / "trajectories.jsonl")]
    assert steps == [0, 0, 1, 1, 2, 2]  # nothing repeated, nothing lost


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, ts, small_tasks):
    trainer = AtlasTrainer(tiny(tmp_path / "empty"), toolspace=ts, tasks=small_tasks)
    with pytest.raises(atlas.AtlasError, match="no checkpoint"):
        trainer.train(resume=True)


def test_warm_start_on_verified_demonstrations(tmp_path, ts, small_tasks):
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from atlas_plugins.policy.embedded import resolve_model_path

    path = resolve_model_path(None)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    cfg = tiny(tmp_path)
    demos, stats = demonstrations(small_tasks[:2], ts, tok, cfg.agent_config(), Scorer(toolspace=ts))
    assert stats["kept"] == 2 and stats["rejected"] == 0
    rows = sft_rows(demos)
    for row, d in zip(rows, demos):
        trained = [i for i, lab in enumerate(row["labels"]) if lab != -100]
        assert len(trained) == sum(d.env_mask)  # loss on model tokens only
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    tuned, log = warm_start(
        model, tok, demos, output_dir=str(tmp_path / "ws"), epochs=1, batch_size=2, peft_config=lora, max_length=384
    )
    losses = [h["loss"] for h in log if "loss" in h]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert any(("lora_B" in n and p.abs().sum() > 0) for n, p in tuned.named_parameters())
    # only the adapter trains; the base weights stay frozen
    assert all(not p.requires_grad for n, p in tuned.named_parameters() if "lora_" not in n)


def test_heldout_tasks_are_refused_for_demonstrations(ts, tmp_path):
    held = load_default_tasks("heldout")[:1]
    with pytest.raises(ValueError, match="held out"):
        demonstrations(held, ts, None, tiny(tmp_path).agent_config(), None)


def test_config_yaml_errors_name_the_setting(tmp_path):
    p = tmp_path / "train.yaml"
    p.write_text("output_dir: x\nnum_generation: 4\n")
    with pytest.raises(ConfigError, match="num_generation.*did you mean 'num_generations'"):
        AtlasGRPOConfig.from_yaml(p)
    p.write_text("output_dir: x\nloading: itl\nmax_steps: 3\n")
    cfg = AtlasGRPOConfig.from_yaml(p, max_steps=5)
    assert cfg.max_steps == 5 and cfg.num_generations == 4 and cfg.beta == 0.001


def _tiny_demo(**overrides):
    """Demo settings small enough for a test: 1 held-out task under ITL, one GRPO step of a group of 2."""
    from atlas_plugins.training.demo import DemoSettings

    base = dict(
        heldout_tasks=1, designs=["itl"], grpo_steps=1, grpo_batch=2, grpo_group=2,
        grpo_max_completion_length=64, grpo_max_turn_tokens=8, eval_max_turns=2, eval_max_new_tokens=8,
        warm_start_epochs=1.0,
    )
    return DemoSettings(**(base | overrides))


def test_demo_rerun_keeps_finished_phases(tmp_path):
    """A tiny demo (1 held-out task, ITL, 2 demonstrations, one GRPO step of a group of 2) writes
    its report, curve and adapters; a rerun with the same --out keeps the evaluations and adapters
    whose settings are unchanged (a killed demo loses at most its current phase); changed settings
    redo only the phases that depend on them."""
    from atlas_plugins.training.demo import run_demo

    settings = _tiny_demo(train_designs=["itl"], warm_start_tasks=2, warm_start_batch=2)
    said: list[str] = []
    first = run_demo(tmp_path / "demo", settings, say=said.append)
    for side in ("before", "after_warm_start", "after"):
        assert set(first[side]) == {"reward", "success", "context_tokens"}
        assert 0.0 <= first[side]["reward"] <= 1.0 and first[side]["context_tokens"] > 0
    assert Path(first["plot"]).stat().st_size > 1000
    report = Path(first["report"]).read_text()
    itl = report.split("## itl", 1)[1].split("##", 1)[0]  # the ITL design's table
    assert "| base |" in itl and "| warm start |" in itl and "| warm start + GRPO |" in itl
    assert "## GRPO training curve" in report and "| 1 |" in report
    assert (tmp_path / "demo" / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "demo" / "warm_start" / "adapter" / "adapter_config.json").is_file()
    assert not any("kept" in m for m in said)
    said.clear()
    again = run_demo(tmp_path / "demo", settings, say=said.append)
    kept = [m for m in said if "kept" in m]
    assert any(m.startswith("[before] itl") for m in kept) and any(
        m.startswith("warm start: adapter kept") for m in kept
    )
    assert any(m.startswith("[after_warm_start] itl") for m in kept)
    assert any(m.startswith("rubric GRPO: adapter kept") for m in kept) and any(
        m.startswith("[after] itl") for m in kept
    )
    for tag in ("before", "after_warm_start", "after"):
        assert again[tag] == first[tag]
    assert first["kept_phases"] == [] and set(again["kept_phases"]) == set(again["timings"])
    assert "eval_before kept from progress.json" in Path(again["report"]).read_text()
    assert again["grpo"]["reward"] == first["grpo"]["reward"]
    said.clear()
    settings = settings.model_copy(update={"eval_max_new_tokens": 9})
    third = run_demo(tmp_path / "demo", settings, say=said.append)
    assert not any(m.startswith("[before]") and "kept" in m for m in said)  # another eval budget: evaluated anew
    assert any(m.startswith("warm start: adapter kept") for m in said)  # the warm start does not depend on it
    assert any(m.startswith("rubric GRPO: adapter kept") for m in said)  # nor does GRPO
    assert set(third["kept_phases"]) == {"warm_start", "grpo"}  # the evaluations ran: their times are real
    said.clear()
    # Without a warm start: the base evaluation is kept, GRPO trains anew from the base model.
    alone = run_demo(tmp_path / "demo", settings.model_copy(update={"warm_start": False}), say=said.append)
    assert any(m.startswith("[before] itl") and "kept" in m for m in said)
    assert not any(m.startswith("warm start") for m in said) and not any("GRPO: adapter kept" in m for m in said)
    assert alone["after_warm_start"] is None and alone["before"] == third["before"]
    itl = Path(alone["report"]).read_text().split("## itl", 1)[1].split("##", 1)[0]
    assert "| base |" in itl and "| warm start + GRPO |" in itl and "| warm start |" not in itl


def test_demo_settings_refuse_unknown_fields():
    from pydantic import ValidationError

    from atlas_plugins.training.demo import DemoSettings

    with pytest.raises(ValidationError, match="grpo_stepz"):
        DemoSettings(grpo_stepz=3)


def test_cpu_demo_config_carries_the_demo_recipe():
    """``AtlasGRPOConfig.cpu_demo`` is the GRPO half of ``atlas demo``'s defaults: one recipe."""
    from atlas_plugins.training.demo import DemoSettings

    s, cfg = DemoSettings(), AtlasGRPOConfig.cpu_demo("x")
    assert (cfg.learning_rate, cfg.max_completion_length, cfg.max_turn_tokens) == (
        s.grpo_lr, s.grpo_max_completion_length, s.grpo_max_turn_tokens
    )
    assert (cfg.per_device_train_batch_size, cfg.num_generations) == (s.grpo_batch, s.grpo_group)
    assert (cfg.temperature, cfg.scale_rewards, cfg.num_iterations) == (
        s.grpo_temperature, s.grpo_scale_rewards, s.grpo_iterations
    )
    assert s.grpo_alpha is None and cfg.aggregator_options == {}  # the paper formula's default weights
    assert (cfg.unfinished_penalty, cfg.repeat_penalty) == (s.grpo_unfinished_penalty, s.grpo_repeat_penalty) == (0.3, 0.1)


@pytest.mark.parametrize(
    "bad, field",
    [({"grpo_alpha": {"TF": -0.5}}, "grpo_alpha"), ({"grpo_alpha": {"tf": 0.7}}, "unknown categories"),
     ({"grpo_alpha": {"TF": 0.0, "TA": 0.0, "TG": 0.0, "PA": 0.0}}, "at least one positive"),
     ({"grpo_scale_rewards": "row"}, "grpo_scale_rewards"), ({"grpo_iterations": 0}, "grpo_iterations"),
     ({"grpo_temperature": 0}, "grpo_temperature"), ({"memory_budget_gb": 0}, "memory_budget_gb")],
)
def test_demo_settings_refuse_bad_grpo_recipe(bad, field):
    """Caught when the settings are read, before a model loads (the trainer's scorer is built
    only after the warm start)."""
    from pydantic import ValidationError

    from atlas_plugins.training.demo import DemoSettings

    with pytest.raises(ValidationError, match=field):
        DemoSettings(**bad)
    assert DemoSettings(grpo_alpha={"PA": 0.0}).grpo_alpha == {"PA": 0.0}  # one category off: the rest stay default


def test_demo_grpo_key_of_a_finished_demo_still_matches():
    """Settings added later enter the GRPO phase's resume key only when changed, so a demo folder
    finished before they existed keeps its GRPO adapter (the key it recorded had none of them)."""
    from atlas_plugins.training.demo import DemoSettings, phase_keys

    unshaped = {"grpo_unfinished_penalty": 0.0, "grpo_repeat_penalty": 0.0}  # what demos ran with until 2026-12-03
    recorded = phase_keys(DemoSettings(**unshaped))[2]
    later = (
        "grpo_temperature", "grpo_scale_rewards", "grpo_iterations", "grpo_alpha", "grpo_beta", "grpo_task_seeds",
        *unshaped,
    )
    assert not any(k in recorded for k in later)
    assert phase_keys(DemoSettings(**unshaped | {"grpo_repeat_penalty": 0.1}))[2]["grpo_repeat_penalty"] == 0.1
    assert phase_keys(DemoSettings(**unshaped, grpo_beta=0.04))[2]["grpo_beta"] == 0.04
    assert phase_keys(DemoSettings(**unshaped, grpo_task_seeds=[1, 2]))[2]["grpo_task_seeds"] == [1, 2]
    assert phase_keys(DemoSettings(grpo_task_seeds=[2, 1, 2]))[2] == phase_keys(DemoSettings(grpo_task_seeds=[2, 1]))[2]
    assert phase_keys(DemoSettings(grpo_task_seeds=[1]))[1] == phase_keys(DemoSettings())[1]  # the warm start is kept
    assert phase_keys(DemoSettings(**unshaped, grpo_temperature=1.0))[2] == recorded  # the default, spelt out
    # Shaping is now the default: an unshaped demo's GRPO adapter is not taken for a shaped one.
    shaped = phase_keys(DemoSettings())[2]
    assert shaped != recorded and shaped["grpo_unfinished_penalty"] == 0.3 and shaped["grpo_repeat_penalty"] == 0.1
    changed = phase_keys(DemoSettings(**unshaped, grpo_scale_rewards="batch"))[2]
    assert changed != recorded and changed["grpo_scale_rewards"] == "batch"
    assert phase_keys(DemoSettings(grpo_scale_rewards="batch"))[1] == phase_keys(DemoSettings())[1]  # warm start kept


def test_gpu_vllm_example_config_parses_with_paper_defaults():
    path = Path(__file__).resolve().parents[1] / "examples" / "train_gpu_vllm.yaml"
    cfg = AtlasGRPOConfig.from_yaml(path)
    assert cfg.use_vllm and cfg.vllm_mode == "colocate"
    assert (cfg.num_generations, cfg.temperature, cfg.beta, cfg.max_tool_calls) == (4, 1.0, 0.001, 20)
    assert cfg.agent_config().loading == "itl"


def test_two_updates_per_rollout_batch_with_batch_scaling_and_training_weights(tmp_path, ts, small_tasks):
    """``num_iterations=2`` (the demo's ``grpo_iterations``): one batch of rollouts feeds two
    optimizer steps; batch-scaled advantages and the training reward's own category weights
    (``aggregator_options.alpha``, the demo's ``grpo_alpha``) go through the trainer."""
    alpha = {"TF": 0.7, "TA": 0.1, "TG": 0.1, "PA": 0.1}
    out = tmp_path / "iter"
    cfg = tiny(
        out, per_device_train_batch_size=4, num_iterations=2, scale_rewards="batch",
        aggregator_options={"alpha": alpha}, save_steps=10, unfinished_penalty=0.0, repeat_penalty=0.0,
    )  # two groups per rollout batch, so the batch's std is not one group's; unshaped, so the logged reward is the rubric's
    trainer = AtlasTrainer(cfg, toolspace=ts, tasks=small_tasks)
    trainer.train()
    assert trainer.trainer.state.global_step == 2
    lines = _log_lines(out / "trajectories.jsonl")
    assert len(lines) == 4 and {ln["step"] for ln in lines} == {0}  # one rollout batch for both updates
    for ln in lines:
        cats = {c: v for c, v in ln["by_category"].items() if c in alpha}
        expected = sum(alpha[c] * v for c, v in cats.items()) / sum(alpha[c] for c in cats)
        assert ln["reward"] == pytest.approx(expected, abs=1e-6), ln["by_category"]


def test_kl_reference_is_the_adapter_grpo_starts_from(tmp_path, ts, small_tasks):
    """With ``beta > 0`` and a model that already holds a trained adapter (the demo's warm start),
    the KL term pulls toward that adapter, not toward the base model: TRL keeps a frozen copy of
    it as the reference ("ref"). So the first step's KL is zero, while the base model is far from
    the adapter; the saved result holds only the trained adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from atlas_plugins.policy.embedded import resolve_model_path

    path = resolve_model_path(None)
    tok = AutoTokenizer.from_pretrained(path)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(path),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a trained adapter's state: lora_B is no longer zero
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    probe = tok("The weather in Paris is sunny today.", return_tensors="pt")
    with torch.no_grad():
        adapted = torch.log_softmax(model(**probe).logits, -1)
        with model.disable_adapter():
            base = torch.log_softmax(model(**probe).logits, -1)
    base_kl = torch.sum(adapted.exp() * (adapted - base), -1).mean().item()
    assert base_kl > 0.05  # the base model is no stand-in for this adapter
    start = {n: p.detach().clone() for n, p in model.named_parameters() if ".default." in n}

    from transformers import TrainerCallback

    class MoveTheReference(TrainerCallback):
        """After step 1, shift the reference adapter: step 2's KL must then see it (the reference
        pass really runs under "ref", not under the trained adapter)."""

        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step == 1:
                with torch.no_grad():
                    for name, p in model.named_parameters():
                        if ".ref." in name and "lora_B" in name:
                            p.add_(0.2 * torch.randn(p.shape, generator=gen))

    out = tmp_path / "kl"
    cfg = tiny(out, beta=0.04, max_steps=2, save_steps=10)
    trainer = AtlasTrainer(
        cfg, toolspace=ts, tasks=small_tasks, model=model, tokenizer=tok, callbacks=[MoveTheReference()]
    )
    peft_model = trainer.trainer.model
    assert "ref" in peft_model.peft_config
    for name, p in peft_model.named_parameters():
        if ".ref." in name:
            assert not p.requires_grad, name
            assert torch.equal(p, start[name.replace(".ref.", ".default.")]), name
    trainer.train()
    kl = [h["kl"] for h in trainer.trainer.state.log_history if "kl" in h]
    assert len(kl) == 2 and abs(kl[0]) < 1e-4, kl  # the policy is still its reference at the first step
    assert kl[1] > 1e-3, kl  # and at the second, the reference is the moved "ref" adapter
    saved = trainer.save_adapter(tmp_path / "adapter")
    assert (saved / "adapter_config.json").is_file() and not (saved / "ref").exists()


def test_curriculum_dynamic_sampling_and_two_designs(tmp_path, ts, small_tasks):
    """The rollout picks (task, design) groups by the curriculum, plays ITL and ITL+PTC groups in
    one step, replaces flat groups (dynamic sampling) and logs how many it dropped; the curriculum
    state is saved for resume."""
    out = tmp_path / "cur"
    cfg = tiny(
        out,
        per_device_train_batch_size=4,
        num_generations=2,
        designs="itl,itl+ptc",
        curriculum=True,
        dynamic_sampling_rounds=1,
        save_steps=10,
        unfinished_penalty=0.25,
        repeat_penalty=0.05,
    )
    trainer = AtlasTrainer(cfg, toolspace=ts, tasks=small_tasks)
    assert trainer.designs == ["itl", "itl+ptc"]
    trainer.train()
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logged) == 2
    for key in (
        "atlas/dynamic/flat_fraction_sampled",
        "atlas/dynamic/flat_fraction_trained",
        "atlas/dynamic/replaced_groups",
        "atlas/curriculum/items_tried",
        "frac_reward_zero_std",
    ):
        assert key in logged[0], key
    assert all(h["atlas/dynamic/flat_fraction_trained"] <= h["atlas/dynamic/flat_fraction_sampled"] for h in logged)
    lines = _log_lines(out / "trajectories.jsonl")
    assert len(lines) == 2 * 4
    assert {ln["trajectory"]["metadata"]["design"] for ln in lines} <= {"itl", "itl+ptc"}
    # The trained reward is the rubric reward less the shaping penalties, on both scoring paths
    # (the rollout's, for dynamic sampling, and the reward function's).
    for ln in (ln for ln in lines if ln["reward"] is not None):
        meta = ln["trajectory"]["metadata"]
        finish = meta.get("finish")
        expected = {"unfinished": 0.25} if finish not in ("answer", "reply") else {}
        assert set(meta["shaping"]) - {"repeated_call"} == set(expected), (finish, meta["shaping"])
        assert ln["reward"] == pytest.approx(ln["rubric_reward"] - sum(meta["shaping"].values()))
    assert any(ln["reward"] < ln["rubric_reward"] for ln in lines)  # 8-token turns, 2 turns: mostly cut
    assert all("atlas/shaping_penalty" in h and "atlas/repeating_episodes" in h for h in logged)
    # Both designs were really played: PTC episodes offer only code_interpreter.
    state = json.loads((out / "curriculum.json").read_text())
    tried = {k for k, v in state["stats"].items() if v["groups"]}
    assert any(k.endswith("@itl") for k in tried) and any(k.endswith("@itl+ptc") for k in tried)
    assert sum(v["groups"] for v in state["stats"].values()) >= 4  # 2 steps × 2 groups, plus any replacements
    with pytest.raises(ConfigError, match="designs"):
        from atlas_plugins.agent.runner import NativeRunner

        AtlasTrainer(cfg, toolspace=ts, tasks=small_tasks, runner=type("R", (), {"run": NativeRunner.run})())
