"""`python -m support.eval_probe OUT.json [--score-first]`: f5-tiny (fixed random weights) says one
evaluation sentence in an espeak-ng voice, and the scorers score it; OUT.json holds the audio's
sha256 and the measures. With --score-first the process scores another clip before (as a training
process has scored its earlier milestones). Used by tests/scoring/test_identical_scores.py."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch


def main(out: Path, score_first: bool) -> None:
    import soundfile as sf

    from support.harness import whisper_model_path
    from voicetune.config import TrainConfig
    from voicetune.demo.corpus import speak_to_wav
    from voicetune.evaluation import EvalSet, synthesize_eval_set
    from voicetune.models.registry import create_adapter
    from voicetune.scoring import get_scorers, to_scoring_rate

    work = out.parent
    ref = speak_to_wav("The birch canoe slid on the smooth planks.", work / "ref.wav", voice="en-us", pitch=40)
    other = speak_to_wav("Glue the sheet to the dark blue background.", work / "other.wav", voice="en-us", pitch=40)
    scorers = get_scorers(str(whisper_model_path()))
    if score_first:
        audio, rate = sf.read(other, dtype="float32")
        scorers.score([to_scoring_rate(audio, rate)], ["Glue the sheet to the dark blue background."], "en")
    adapter = create_adapter(TrainConfig.resolve({"model": "f5-tiny", "data": None}))
    torch.manual_seed(0)  # the initial weights
    model = adapter.build_model()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():  # a fresh DiT has zero output layers: every weight perturbed, as a trained one
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    model.eval()
    text = "It is easy to tell the depth of a well."
    eval_set = EvalSet([text], [], [], str(ref), "The birch canoe slid on the smooth planks.", "en")
    (audio,) = synthesize_eval_set(adapter, model, eval_set)
    (score,) = scorers.score([to_scoring_rate(audio, adapter.sample_rate)], [text], "en")
    out.write_text(
        json.dumps(
            {
                "audio_sha256": hashlib.sha256(np.ascontiguousarray(audio).tobytes()).hexdigest(),
                "heard": score.transcript,
                "wer": score.wer,
                "cer": score.cer,
                "dnsmos": score.dnsmos,
                "torch_threads_after": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), "--score-first" in sys.argv[2:])
