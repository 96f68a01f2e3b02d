"""Memory levers: --gradient-checkpointing gives the same gradients while keeping less for
backward (F5's DiT blocks, XTTS's GPT-2 blocks); --optimizer adamw8bit is refused on a CPU with
the fix named."""

from __future__ import annotations

import pytest
import torch

from support.harness import run_cli, toy_args
from voicetune.config import TrainConfig
from voicetune.models.registry import create_adapter


def one_pass(model_name: str, checkpointing: bool, corpus, cache):
    """(gradients, bytes saved for backward outside checkpointed blocks) of one training pass."""
    config = TrainConfig.resolve({"model": model_name, "data": corpus, "gradient_checkpointing": checkpointing})
    adapter = create_adapter(config)
    torch.manual_seed(0)
    model = adapter.build_model().train()
    splits = adapter.load_data(corpus, cache)
    batch = adapter.collate([splits.train[i] for i in range(3)])
    saved = []

    def pack(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    torch.manual_seed(1)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = adapter.compute_loss(model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return grads, sum(saved)


@pytest.mark.parametrize("model_name", ["f5-tiny", "xtts-tiny"])
def test_gradient_checkpointing_keeps_less_and_gives_the_same_gradients(model_name, toy_corpus, tmp_path):
    plain, plain_saved = one_pass(model_name, False, toy_corpus, tmp_path / "cache")
    checkpointed, checkpointed_saved = one_pass(model_name, True, toy_corpus, tmp_path / "cache")
    # The tiny models have 2-4 blocks beside encoders that are not checkpointed: a real share, not most.
    assert checkpointed_saved < 0.8 * plain_saved, (checkpointed_saved, plain_saved)
    assert plain.keys() == checkpointed.keys() and plain
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-4, atol=1e-6)


def test_adamw8bit_on_a_cpu_is_refused_with_the_fix(toy_corpus, tmp_path):
    result = run_cli("train", *toy_args(toy_corpus, tmp_path / "run", "--optimizer", "adamw8bit", max_updates=2))
    assert result.returncode == 2
    assert "--optimizer adamw8bit needs a CUDA GPU" in result.stderr and "--optimizer adamw" in result.stderr
    assert "Traceback" not in result.stderr
