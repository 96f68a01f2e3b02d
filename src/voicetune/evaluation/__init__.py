"""The evaluation of models: what a voice says in a fixed evaluation set, scored against the real
voice (`sets`), at every milestone of a run (`train.evaluator`) and for `voicetune eval`
(`targets`). The measures themselves are `voicetune.scoring`'s; nothing here knows a model beyond
the adapter protocol.
"""

from voicetune.evaluation.sets import (
    DEFAULT_EVAL_CLIPS,
    DEFAULT_EVAL_SEEDS,
    EVAL_SEED,
    MEASURE_KEYS,
    EvalResult,
    EvalSet,
    RealVoice,
    choose_eval_set,
    evaluate_model,
    evaluate_weights,
    plot_eval,
    score_real_voice,
    scored_row,
    seed_everything,
    synthesize_eval_set,
)
from voicetune.evaluation.targets import (
    EvalReport,
    EvalRow,
    Target,
    default_plot_path,
    eval_set_for,
    evaluate_targets,
    load_target,
    resolve_targets,
)

__all__ = [
    "DEFAULT_EVAL_CLIPS",
    "DEFAULT_EVAL_SEEDS",
    "EVAL_SEED",
    "MEASURE_KEYS",
    "EvalReport",
    "EvalResult",
    "EvalRow",
    "EvalSet",
    "RealVoice",
    "Target",
    "choose_eval_set",
    "default_plot_path",
    "eval_set_for",
    "evaluate_model",
    "evaluate_targets",
    "evaluate_weights",
    "load_target",
    "plot_eval",
    "resolve_targets",
    "score_real_voice",
    "scored_row",
    "seed_everything",
    "synthesize_eval_set",
]
