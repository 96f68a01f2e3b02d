"""Pickle-free state: nested trees round-trip exactly through safetensors + JSON."""

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from voicetune.checkpoints.serialization import HashingWriter, join_tree, json_bytes, split_tree, write_safetensors


def adamw_state():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.95))
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    return opt


def test_optimizer_state_round_trips_and_loads():
    opt = adamw_state()
    tree, tensors = split_tree(opt.state_dict(), "optimizer")
    text = json_bytes(tree)  # strict JSON: no pickle, no NaN literal
    back = join_tree(json.loads(text), tensors)
    assert back["param_groups"][0]["betas"] == (0.8, 0.95)
    assert set(back["state"]) == {0, 1, 2, 3}  # int keys restored
    fresh = torch.optim.AdamW(opt.param_groups[0]["params"], lr=1)
    fresh.load_state_dict(back)
    for key, value in opt.state_dict()["state"][0].items():
        assert torch.equal(fresh.state_dict()["state"][0][key], value)


def test_rng_states_round_trip():
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "odd": {"nan": float("nan"), "inf": float("-inf"), 3: (1, [2.5, None])},
    }
    tree, tensors = split_tree(state)
    back = join_tree(json.loads(json_bytes(tree)), tensors)
    assert back["python"] == state["python"]
    assert np.array_equal(back["numpy"][1], state["numpy"][1]) and back["numpy"][0] == "MT19937"
    assert torch.equal(back["torch"], state["torch"])
    assert np.isnan(back["odd"]["nan"]) and back["odd"]["inf"] == float("-inf") and back["odd"][3] == (1, [2.5, None])


def test_unknown_objects_are_refused_rather_than_pickled():
    with pytest.raises(TypeError, match="without pickle"):
        split_tree({"fn": object()})


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.uint8, torch.bool])
def test_streamed_safetensors_load_with_the_reference_library(tmp_path, dtype):
    tensors = {
        "b": torch.arange(12).reshape(3, 4).to(dtype),
        "a": torch.ones(5).to(dtype),
        "empty": torch.zeros(0, 3).to(dtype),
        "scalar": torch.tensor(1).to(dtype),
    }
    path = tmp_path / "x.safetensors"
    with open(path, "wb") as fh:
        writer = HashingWriter(fh)
        write_safetensors(writer, tensors)
    assert writer.size == path.stat().st_size
    import hashlib

    assert writer.sha256.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = load_file(str(path))
    for key, value in tensors.items():
        assert loaded[key].dtype == dtype and torch.equal(loaded[key], value)
