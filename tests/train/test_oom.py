"""Out-of-memory recovery: a real `torch.OutOfMemoryError` in a training pass splits the batch into
micro-batches that give the same gradient (or leaves out an item that never fits), the update is
not lost, the change is logged once and kept in run.json and checkpoints, and a stopped and
resumed run still ends bit for bit where a straight one ends.

The mechanism is the toy model's tests (deterministic: a split batch's gradient equals the whole
one's); every model family's tiny model then runs the same recovery on its own batches, forward
and loss (`family`), where the retried update must be the very update a resumed run makes."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from support.harness import Training, cli_env, last_logged_step, run_cli, toy_args, wait_until
from support.oom_adapter import MemoryBudgetToyAdapter, PretendGpu, batch_numbers
from voicetune.checkpoints.store import CheckpointStore
from voicetune.models.registry import model_names
from voicetune.train.oom import UpdatePasses
from voicetune.train.state import LoopState

OOM_MODEL = "support.oom_adapter:create"


class DeterministicBudgetToy(MemoryBudgetToyAdapter):
    """No noise and no dropout: the gradient is a pure function of the items, so a split batch's
    gradient can be compared with the whole batch's."""

    def compute_loss(self, model, batch):
        mel, mask = batch["mel"], batch["mask"]
        pred = model.net(torch.cat([mel, torch.zeros_like(mel[..., :1])], dim=-1))
        loss = ((((pred - mel) ** 2).mean(-1)) * mask).sum() / mask.sum()
        frames = mel.shape[0] * mel.shape[1]
        if self.budget is not None and frames > self.budget:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {frames} frames")
        return loss


@pytest.fixture(scope="module")
def toy_setup(toy_corpus, tmp_path_factory):
    from accelerate import Accelerator

    adapter = DeterministicBudgetToy()
    splits = adapter.load_data(toy_corpus, tmp_path_factory.mktemp("cache"))
    return adapter, splits, Accelerator(cpu=True)


def gradients(toy_setup, micro_indices, budget=None, loop=None):
    """Gradients of one update over `micro_indices` (a list of item lists) and the changes made."""
    adapter, splits, accelerator = toy_setup
    adapter.budget = budget
    torch.manual_seed(0)
    model = adapter.build_model().eval()  # eval: no dropout
    optimizer = torch.optim.AdamW(model.parameters())
    changes = []
    loop = loop or LoopState()
    passes = UpdatePasses(adapter, model, accelerator, optimizer, splits, len(micro_indices), loop, 1, changes.append)
    micro = [(adapter.collate([splits.train[i] for i in idx]), idx) for idx in micro_indices]
    loss_sum = passes.run(micro, step=1)
    return {n: p.grad.clone() for n, p in model.named_parameters()}, loss_sum, changes, loop


def assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def assert_close(a, b):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-7)


def test_a_split_batch_gives_the_gradient_of_the_whole_batch(toy_setup):
    micro = [[0, 1, 2, 3], [4, 5, 6]]
    whole, loss, _, _ = gradients(toy_setup, micro)
    split, split_loss, _, _ = gradients(toy_setup, micro, loop=LoopState(micro_split=4))
    assert_close(whole, split)
    assert split_loss == pytest.approx(loss, rel=1e-5)


def test_out_of_memory_splits_the_batch_retries_the_update_and_keeps_its_gradient(toy_setup):
    _adapter, splits, _ = toy_setup
    micro = [[0, 1, 2, 3], [4, 5, 6, 7]]
    whole, loss, _, _ = gradients(toy_setup, micro)
    longest = max(splits.train_lengths[i] for i in range(8))
    recovered, recovered_loss, changes, loop = gradients(toy_setup, micro, budget=2 * longest)
    assert [c.action for c in changes] == ["split"] and loop.micro_split == 2 and loop.item_limit is None
    assert "out of memory at step 1" in changes[0].describe() and "effective batch unchanged" in changes[0].describe()
    assert_close(whole, recovered)
    assert recovered_loss == pytest.approx(loss, rel=1e-5)


def test_an_item_that_never_fits_is_left_out_and_the_rest_still_train(toy_setup):
    _adapter, splits, _ = toy_setup
    micro = [[0, 1, 2, 3]]
    lengths = [splits.train_lengths[i] for i in micro[0]]
    budget = max(lengths) - 1  # the longest item cannot fit even alone
    assert sorted(lengths)[-2] <= budget, "the corpus needs one item longer than the others"
    _, _, changes, loop = gradients(toy_setup, micro, budget=budget)
    assert changes[-1].action == "limit" and loop.item_limit == max(lengths)
    kept = [[i for i in micro[0] if splits.train_lengths[i] < loop.item_limit]]
    expected, _, _, _ = gradients(toy_setup, kept, loop=LoopState(micro_split=loop.micro_split))
    recovered, _, _, _ = gradients(toy_setup, micro, budget=budget, loop=loop)  # the settings that worked
    assert_close(expected, recovered)


# ---- every family's tiny model ------------------------------------------------------------

FAMILY_MODELS = [name for name in model_names() if name.endswith("-tiny")]


@pytest.fixture(scope="module", params=FAMILY_MODELS)
def family(request, xtts_corpus, tmp_path_factory):
    """(adapter on a pretend GPU, splits, accelerator, model, its initial state) of one family's
    tiny model, on 14 espeak-ng clips. Built once: each update starts from the initial state."""
    import copy

    from accelerate import Accelerator

    from voicetune.config import TrainConfig
    from voicetune.models.registry import create_adapter

    adapter = PretendGpu(create_adapter(TrainConfig(model=request.param, data=xtts_corpus)))
    splits = adapter.load_data(xtts_corpus, tmp_path_factory.mktemp("cache"))
    model = adapter.build_model().train()  # training: dropout and every random draw of the loss
    return adapter, splits, Accelerator(cpu=True), model, copy.deepcopy(model.state_dict())


def family_gradients(family, micro_indices, budget=None, loop=None):
    """`gradients` for a family's model: one update from its initial state and seed 0."""
    adapter, splits, accelerator, model, initial = family
    adapter.budget = budget
    model.load_state_dict(initial)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(adapter.trainable_parameters(model))
    changes: list = []
    loop = loop or LoopState()
    passes = UpdatePasses(adapter, model, accelerator, optimizer, splits, len(micro_indices), loop, 1, changes.append)
    micro = [(adapter.collate([splits.train[i] for i in idx]), idx) for idx in micro_indices]
    loss_sum = passes.run(micro, step=1)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return grads, loss_sum, changes, loop


def numbers(family, items):
    adapter, splits = family[:2]
    return batch_numbers(adapter.collate([splits.train[i] for i in items]))


def test_out_of_memory_in_a_family_update_is_retried_split_as_a_resumed_run_would_run_it(family):
    micro = [[0, 1, 2, 3]]
    halves = [[0, 1], [2, 3]]  # the pieces of a batch split in two
    budget = max(numbers(family, half) for half in halves)
    assert numbers(family, micro[0]) > budget
    recovered, loss, changes, loop = family_gradients(family, micro, budget=budget)
    assert [c.action for c in changes] == ["split"] and loop.micro_split == 2 and loop.item_limit is None
    # The failed passes left nothing behind: the gradient and the loss are, bit for bit, those of
    # the update run split from the start (what a resumed run with these settings runs).
    expected, expected_loss, _, _ = family_gradients(family, micro, loop=LoopState(micro_split=2))
    assert any(bool(g.abs().sum() > 0) for g in recovered.values())
    assert_same(expected, recovered)
    assert loss == expected_loss


def test_a_family_item_that_never_fits_is_left_out_by_its_length_and_the_rest_still_train(family):
    splits = family[1]
    held = {i: numbers(family, [i]) for i in range(len(splits.train))}
    by_size = sorted(held, key=held.get)
    longest = by_size[-1]  # the item that takes the most memory
    micro = [[*by_size[:3], longest]]
    budget = held[longest] - 1  # it cannot fit even alone; the three smallest fit
    # Split to single items from the start: the longest then fails alone at its first pass.
    recovered, _, changes, loop = family_gradients(family, micro, budget=budget, loop=LoopState(micro_split=4))
    assert [c.action for c in changes] == ["limit"] and loop.item_limit == splits.train_lengths[longest]
    kept = [[i for i in micro[0] if splits.train_lengths[i] < loop.item_limit]]
    assert kept == [by_size[:3]]
    expected, _, _, _ = family_gradients(family, kept, loop=LoopState(micro_split=4))
    assert_same(expected, recovered)


N = 40
CADENCE = ["--save-every", "20", "--last-every", "5"]


def final_loop(run: Path) -> dict:
    store = CheckpointStore(run)
    final = max(store.scan(), key=lambda c: c.step)
    return json.loads((final.path / "loop.json").read_text())["state"]


def test_training_recovers_from_out_of_memory_and_resumes_exactly(toy_corpus, tmp_path):
    from support.harness import assert_same_tensors, load_tensors

    plain = tmp_path / "plain"
    assert run_cli("train", *toy_args(toy_corpus, plain, *CADENCE, "--model", OOM_MODEL, max_updates=N)).returncode == 0
    env = cli_env(VOICETUNE_TOY_OOM_FRAMES="450")  # 4 clips of 2-3 s do not fit, 2 do
    straight = tmp_path / "straight"
    result = run_cli("train", *toy_args(toy_corpus, straight, *CADENCE, "--model", OOM_MODEL, max_updates=N), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("out of memory at step") == 1, result.stdout
    changes = json.loads((straight / "run.json").read_text())["memory_changes"]
    assert [c["action"] for c in changes] == ["split"] and changes[0]["micro_split"] == 2
    assert final_loop(straight)["micro_split"] == 2
    # No update lost, none smaller: the same items as a run with memory to spare.
    assert final_loop(straight)["step"] == N
    assert final_loop(straight)["items_seen"] == final_loop(plain)["items_seen"]

    run = tmp_path / "run"
    args = toy_args(toy_corpus, run, *CADENCE, "--model", OOM_MODEL, max_updates=N)
    training = Training(args, env=env, log=tmp_path / "first.log")
    assert wait_until(lambda: last_logged_step(run) >= 12, proc=training.proc)
    training.signal(signal.SIGTERM)
    assert training.wait() == 143, training.output()
    resumed = run_cli("train", *args, env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "memory settings from the checkpoint" in resumed.stdout and "out of memory" not in resumed.stdout.replace(
        "memory settings from the checkpoint (out-of-memory recovery)", ""
    )
    a = max(CheckpointStore(straight).scan(), key=lambda c: c.step).path
    b = max(CheckpointStore(run).scan(), key=lambda c: c.step).path
    for component in ("model", "ema", "optimizer", "rng"):
        assert_same_tensors(load_tensors(a / f"{component}.safetensors"), load_tensors(b / f"{component}.safetensors"))
