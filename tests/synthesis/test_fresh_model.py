"""Every way a synthesis can end leaves the model as a freshly loaded one, for every model family:
a cut at any depth of a long text (a cancel, or an exception inside a chunk), then a text of
another length gives the very samples a freshly loaded engine gives (synthesis is seeded)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from torch.nn.modules.module import register_module_forward_pre_hook

from support.speech_server import NFE
from voicetune.synthesis.engine import Cancelled, Engine

# Two short sentences: every cut falls inside the first chunk, and xtts-tiny's time grows with
# each character (it speaks up to its token cap, through upstream's full-size HiFi-GAN).
LONG = "Glue the sheet to the dark blue background. It is easy to tell the depth of a well."
OTHER = "Rice is served."  # another length: a cache left by LONG would not fit it
FAMILIES = ("f5", "xtts", "chatterbox")


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    """(engine, voice, what the engine said for OTHER when freshly loaded, layer calls of LONG's
    first chunk) of one model family."""
    run = request.getfixturevalue(f"{request.param}_voice_run")
    nfe = int(NFE) if request.param == "f5" else None  # F5's sampling steps; the others keep their own
    engine = Engine.load(run, nfe=nfe)
    voice = engine.default_voice()
    expected = engine.synthesize(OTHER, voice, seed=3).audio  # its first words: a freshly loaded model's
    return engine, voice, expected, first_chunk_calls(engine, voice)


class LayerCalls:
    """Counts the model's layer calls; at call `at` it cancels (`cancel`) or raises (`error`)."""

    def __init__(self, engine: Engine, at: int | None = None, cancel: threading.Event | None = None):
        self.layers = {id(m) for m in engine.model.modules()}
        self.at, self.cancel, self.count = at, cancel, 0

    def __call__(self, module, args):
        if id(module) not in self.layers:
            return
        self.count += 1
        if self.count == self.at:
            if self.cancel is None:
                raise RuntimeError("injected failure inside a chunk")
            self.cancel.set()  # the engine's own check, which runs after this hook, stops here

    def __enter__(self):
        self._handle = register_module_forward_pre_hook(self)
        return self

    def __exit__(self, *exc):
        self._handle.remove()


def first_chunk_calls(engine: Engine, voice) -> int:
    """Layer calls of LONG's first chunk spoken whole, as every later request speaks it: the engine
    has spoken in this voice before, which also computed what depends on the voice alone (kept by
    Chatterbox)."""
    plan = engine.plan(LONG, voice)
    with LayerCalls(engine) as calls:
        engine.speak_chunk(plan.chunks[0], plan.seeds[0], voice)
    return calls.count


@pytest.mark.parametrize("how", ["cancel", "exception"])
@pytest.mark.parametrize("depth", ["first layer call", "mid-sampling", "last layer call"])
def test_a_synthesis_cut_at_any_depth_leaves_the_model_fresh(family, depth, how):
    engine, voice, expected, total = family
    at = {"first layer call": 1, "mid-sampling": total // 2, "last layer call": total}[depth]
    cancel = threading.Event()
    with LayerCalls(engine, at, cancel if how == "cancel" else None) as calls:
        with pytest.raises(Cancelled if how == "cancel" else RuntimeError):
            list(engine.stream(engine.plan(LONG, voice), voice, cancel=cancel))
    assert calls.count == at  # it stopped inside the first chunk, where it was cut
    np.testing.assert_array_equal(engine.synthesize(OTHER, voice, seed=3).audio, expected)


def test_cancelled_and_completed_requests_alternating_all_sound_as_a_fresh_model(family):
    engine, voice, expected, total = family
    for round_ in range(3):  # cut ever deeper into the first half of the chunk
        cancel = threading.Event()
        with LayerCalls(engine, 1 + (round_ * total) // 6, cancel), pytest.raises(Cancelled):
            list(engine.stream(engine.plan(LONG, voice), voice, cancel=cancel))
        np.testing.assert_array_equal(engine.synthesize(OTHER, voice, seed=3).audio, expected)
