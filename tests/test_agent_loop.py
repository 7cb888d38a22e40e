"""The native agent loop over real embedded MCP servers: token faithfulness, error observations,
meta-calls, PTC, and scoring of reference solutions (scripted turns, then the real model)."""

from __future__ import annotations

import pytest

import atlas_plugins as atlas
from atlas_plugins.agent.loop import Agent, AgentConfig
from atlas_plugins.envs.taskgen import load_default_tasks
from atlas_plugins.policy.embedded import load_tokenizer
from atlas_plugins.training.evaluate import Scorer
from atlas_plugins.training.warmstart import ScriptedPolicy, scripted_turns

torch = pytest.importorskip("torch", reason="the agent loop tests need the 'train' extra (torch)")


@pytest.fixture(scope="module")
def ts():
    with atlas.Toolspace.default(servers=["math", "units", "notes", "contacts", "weather", "email"]) as space:
        yield space


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(None)


@pytest.fixture(scope="module")
def tasks():
    wanted = {"math_multiply", "notes_create", "contacts_then_email", "units_convert"}
    picked = {}
    for t in load_default_tasks("train"):
        tpl = t.metadata.get("template")
        if tpl in wanted and tpl not in picked:
            picked[tpl] = t
    assert set(picked) == wanted
    return picked


def _play(ts, tokenizer, turns, task, **cfg):
    cfg.setdefault("max_episode_tokens", 16384)  # ISL's fetch_tools returns whole servers' schemas
    agent = Agent(ScriptedPolicy(tokenizer, turns), ts, AgentConfig(**cfg))
    return agent.run([task])[0]


def _check_layout(traj, tokenizer):
    assert len(traj.completion_ids) == len(traj.env_mask) == len(traj.logprobs)
    assert all(lp == 0.0 for lp, m in zip(traj.logprobs, traj.env_mask) if m == 0)
    full = tokenizer.decode(traj.prompt_ids + traj.completion_ids)
    # Every message after the prompt appears, in order, in the one token stream the model saw.
    pos = 0
    for m in traj.messages[2:]:
        found = full.find(m["content"][:40], pos)
        assert found >= 0, f"message {m['content'][:40]!r} not in the token stream after {pos}"
        pos = found


@pytest.mark.parametrize("loading", ["eager", "isl", "itl"])
def test_reference_solution_scores_full_reward_under_each_loading_policy(ts, tokenizer, tasks, loading):
    scorer = Scorer(toolspace=ts)
    for task in tasks.values():
        traj = _play(ts, tokenizer, scripted_turns(task, loading=loading, ptc=False), task, loading=loading)
        _check_layout(traj, tokenizer)
        scorer.score(traj)
        assert traj.reward == pytest.approx(1.0), (task.id, loading, traj.scores, [c.model_dump() for c in traj.tool_calls])
        assert traj.tool_errors == 0 and traj.parse_failures == 0
        assert traj.metadata["finish"] == "answer" and traj.prefix_breaks == 0


def test_scripted_thoughts_quote_what_the_tool_does(ts, tokenizer, tasks):
    """With ``describe``, the thought before loading and calling a tool names what the tool does
    (from its description), and the scripted episode still scores full reward."""
    task = tasks["notes_create"]

    def describe(name: str) -> str | None:
        spec = ts.get_tool(name)
        return spec.description if spec else None

    turns = scripted_turns(task, loading="itl", ptc=False, think=True, describe=describe)
    step = task.metadata["reference_solution"][0]
    gist = " ".join(describe(f"{step['server']}:{step['tool']}").split()[:3]).lower()
    select, call = turns[1], turns[2]
    assert select.startswith("<think>") and gist in select.split("</think>")[0].lower()
    assert gist in call.split("</think>")[0].lower() and f'"{step["server"]}:{step["tool"]}"' in call
    # Without a description the thought falls back to the plain wording.
    plain = scripted_turns(task, loading="itl", ptc=False, think=True, describe=lambda name: None)
    assert "fits the task; load the schema." in plain[1] and gist not in plain[1].split("</think>")[0].lower()
    traj = _play(ts, tokenizer, turns, task, loading="itl")
    Scorer(toolspace=ts).score(traj)
    assert traj.reward == pytest.approx(1.0)


def test_ptc_reference_solution_runs_in_the_sandbox(ts, tokenizer, tasks):
    task = tasks["contacts_then_email"]
    traj = _play(ts, tokenizer, scripted_turns(task, loading="itl", ptc=True), task, loading="itl", executor="local")
    _check_layout(traj, tokenizer)
    names = [c.name for c in traj.tool_calls]
    assert names[0] == "code_interpreter" and traj.tool_calls[0].ok
    # the MCP calls made inside the cell are on the trajectory too
    assert names[1:] == [f"{s['server']}:{s['tool']}" for s in task.metadata["reference_solution"]]
    Scorer(toolspace=ts).score(traj)
    assert traj.reward == pytest.approx(1.0)
    assert "code_interpreter" in traj.messages[0]["content"]


def test_bad_turns_become_observations_not_crashes(ts, tokenizer, tasks):
    task = tasks["math_multiply"]
    turns = [
        '<tool_call>{"name": "math:multiply", "arguments": {"numbers": [2, 3}</tool_call>',  # repaired JSON
        '<tool_call>{"arguments": {}}</tool_call>',  # no name
        '<tool_call>{"name": "math:multiply", "arguments": {"numbers": [2, 3]}}</tool_call>',  # not loaded under ITL
        '<tool_call>{"name": "fetch_tools", "arguments": {"server": "mathh"}}</tool_call>',  # unknown server
        '<tool_call>{"name": "bogus", "arguments": {}}</tool_call>',
        "<answer>6</answer>",
    ]
    traj = _play(ts, tokenizer, turns, task, loading="itl")
    _check_layout(traj, tokenizer)
    observations = [m["content"] for m in traj.messages if m["role"] == "tool"]
    assert any("get_selected_tools" in o for o in observations), observations  # how to load it
    assert any("unknown server 'mathh'" in o and "math" in o.split('closest first')[-1] for o in observations), observations
    assert any("unknown tool 'bogus'" in o for o in observations)
    assert traj.parse_failures >= 1 and traj.tool_errors >= 2
    assert traj.final_answer == "6"


def test_tool_call_limit_ends_the_episode(ts, tokenizer, tasks):
    call = '<tool_call>{"name": "math:add", "arguments": {"numbers": [1, 1]}}</tool_call>'
    traj = _play(ts, tokenizer, [call] * 10, tasks["math_multiply"], loading="eager", max_tool_calls=3)
    assert len(traj.tool_calls) == 3 and traj.metadata["finish"] == "tool_limit"


@pytest.mark.slow
def test_real_model_trajectory_is_token_faithful(ts, tokenizer, tasks):
    """Sampled segments carry the model's logprobs: re-scoring the whole stream reproduces them."""
    from atlas_plugins.policy.transformers_policy import TransformersPolicy

    policy = TransformersPolicy()
    agent = Agent(policy, ts, AgentConfig(loading="itl", max_new_tokens=12, max_turns=2, temperature=1.0))
    trajs = agent.run([tasks["math_multiply"], tasks["units_convert"]], seed=3)
    model = policy.model
    for traj in trajs:
        _check_layout(traj, tokenizer)
        ids = torch.tensor([traj.prompt_ids + traj.completion_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1].float()
        logps = torch.log_softmax(logits, -1)
        p = len(traj.prompt_ids)
        for j, (tok, m, lp) in enumerate(zip(traj.completion_ids, traj.env_mask, traj.logprobs)):
            if m == 1:
                assert abs(logps[p + j - 1, tok].item() - lp) < 1e-3
        assert sum(traj.env_mask) > 0


def test_followup_user_turns_are_delivered_in_order(ts, tokenizer, tasks):
    task = tasks["math_multiply"].model_copy(deep=True)
    task.metadata["followups"] = ["Now add 1 and 1.", "Thanks, that is all."]
    call = '<tool_call>{"name": "math:add", "arguments": {"numbers": [1, 1]}}</tool_call>'
    turns = ["<answer>first</answer>", call, "<answer>2</answer>", "<answer>bye</answer>", "<answer>never</answer>"]
    traj = _play(ts, tokenizer, turns, task, loading="eager")
    assert traj.metadata["finish"] == "answer" and traj.turns == 4
    assert traj.metadata["answers"] == ["first", "2", "bye"] and traj.final_answer == "bye"
    # user_turn_at[i] < call.turn <= user_turn_at[i+1]: the add call belongs to user turn 1.
    assert traj.metadata["user_turn_at"] == [0, 1, 3]
    assert [c.turn for c in traj.tool_calls] == [2]
    users = [m["content"] for m in traj.messages if m["role"] == "user"]
    assert users[1:] == ["Task: Now add 1 and 1.", "Task: Thanks, that is all."]
    _check_layout(traj, tokenizer)


def test_a_policy_that_returns_too_few_generations_is_an_error_not_a_hang(ts, tokenizer, tasks):
    """A policy plugin whose generate() drops a row would leave that episode waiting forever."""
    from atlas_plugins.errors import AtlasError

    class DropsEveryRow(ScriptedPolicy):
        def generate(self, batch, max_new_tokens=None, **kw):
            return []

    agent = Agent(DropsEveryRow(tokenizer, ["<answer>1</answer>"]), ts, AgentConfig(loading="itl"))
    with pytest.raises(AtlasError, match="returned 0 generations for 1 prompts"):
        agent.run([tasks["math_multiply"]])


def test_sft_rows_refuse_an_env_mask_of_the_wrong_length(ts, tokenizer, tasks):
    from atlas_plugins.training.warmstart import sft_rows

    traj = _play(ts, tokenizer, ["<answer>1</answer>"], tasks["math_multiply"], loading="itl")
    assert sft_rows([traj])  # a well-formed episode gives its row
    bad = traj.model_copy(update={"env_mask": traj.env_mask[:-1]})
    with pytest.raises(ValueError, match="env_mask has .* entries for .* completion tokens"):
        sft_rows([bad])
