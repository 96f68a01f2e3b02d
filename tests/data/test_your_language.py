"""The README's quick path in Spanish and in Portuguese, with no --language anywhere: the language
`prepare` detects travels with the dataset into the run, its scoring and its synthesis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from real_speech import require_packages, write_prompts

from support.harness import WHISPER_WORKERS, cli_env, run_cli
from voicetune.demo.corpus import speak_to_wav

# Brazilian Portuguese spoken by espeak-ng (no recorded Portuguese prompts reach this machine).
PORTUGUESE = [
    "O menino correu pela praia enquanto o sol se punha devagar sobre o mar.",
    "A biblioteca da cidade abre cedo e fecha tarde todos os dias da semana.",
    "Minha avó fazia pão de queijo aos domingos para a família inteira.",
    "O trem para São Paulo sai da estação central às oito horas da manhã.",
    "Os pássaros cantavam nas árvores do parque depois da chuva forte.",
    "Ela comprou frutas frescas no mercado e voltou para casa a pé.",
    "O professor explicou a lição com paciência e muitos exemplos.",
    "Na fazenda havia cavalos, vacas e um cachorro muito esperto.",
    "Quando chegamos ao hotel, o jantar já estava servido na varanda.",
    "O rio atravessa a cidade e deságua no oceano perto do porto.",
]


def spanish_recordings(folder: Path) -> Path:
    """30 recorded Spanish telephone prompts of one voice, one after another (the user's 40 prompts)."""
    require_packages(("es",))
    folder.mkdir(parents=True)
    write_prompts(folder / "grabacion.wav", "es", 0, 30)
    return folder


def portuguese_recordings(folder: Path) -> Path:
    """Ten files of two sentences each, in espeak-ng's pt-br voice."""
    folder.mkdir(parents=True)
    for i in range(len(PORTUGUESE) // 2):
        speak_to_wav(f"{PORTUGUESE[2 * i]} {PORTUGUESE[2 * i + 1]}", folder / f"frase_{i}.wav", voice="pt-br")
    return folder


# language, recordings, what the engine must read, how it must read it
CASES = {
    "es": (spanish_recordings, "El 5 de marzo de 2024 pagué 1.250,50 €.", "El cinco de marzo de dos mil veinticuatro"),
    "pt": (portuguese_recordings, "No dia 5 de março paguei 2 euros.", "No dia cinco de março paguei dois euros"),
}


@pytest.mark.slow
@pytest.mark.parametrize("language", CASES)
def test_the_quick_path_trains_scores_and_speaks_in_the_recordings_language(language, whisper_model, tmp_path):
    make_recordings, text, spoken = CASES[language]
    recordings = make_recordings(tmp_path / "recordings")
    dataset, run = tmp_path / "datasets" / "me", tmp_path / "runs" / "me"
    prepared = run_cli(
        "prepare",
        recordings,
        "--out",
        dataset,
        "--whisper-model",
        whisper_model,
        "--workers",
        WHISPER_WORKERS,
        timeout=900,
    )
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    assert run_cli("dataset", "check", dataset).returncode == 0
    env = cli_env(VOICETUNE_EVALUATE="true", VOICETUNE_F5_NFE_STEPS="4")
    trained = run_cli(
        "train",
        "--data",
        dataset,
        "--run",
        run,
        "--model",
        "f5-tiny",
        "--max-updates",
        "2",
        "--save-every",
        "2",
        "--whisper-model",
        str(whisper_model),
        "--set",
        "eval_clips=2",
        "--set",
        "eval_seeds=1",
        "--set",
        "max_sample_prompts=0",
        env=env,
        timeout=900,
    )
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert f"language {language} (the dataset's)" in trained.stdout
    info = json.loads((run / "run.json").read_text())
    assert info["language"] == {"code": language, "from": "dataset"}
    assert info["config"]["language"] == language
    # The real voice transcribed in its own language: its words are heard (English gave WER 1.0).
    assert info["eval_set"]["set"]["language"] == language
    assert info["eval_set"]["ceiling"]["wer"] < 0.5, info["eval_set"]["ceiling"]
    # What serve, narrate and synthesize speak goes through this engine, in the run's language.
    from voicetune.synthesis.engine import Engine

    engine = Engine.load(run, nfe=4)
    assert engine.plan(text, engine.default_voice()).normalized.startswith(spoken)


def test_a_language_that_contradicts_the_dataset_is_refused_and_leaves_nothing(toy_corpus, tmp_path):
    dataset = tmp_path / "data"
    import shutil

    shutil.copytree(toy_corpus, dataset)
    (dataset / ".voicetune").mkdir(exist_ok=True)
    (dataset / ".voicetune" / "settings.json").write_text(json.dumps({"language": "es"}))
    run = tmp_path / "run"
    args = ["--data", dataset, "--run", run, "--model", "f5-tiny", "--max-updates", "1", "--batch-frames", "700"]
    refused = run_cli("train", *args, "--language", "en")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--language en: the dataset" in refused.stderr and "--language-mismatch ok" in refused.stderr
    assert not run.exists()
    allowed = run_cli("train", *args, "--language", "en", "--language-mismatch", "ok")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert json.loads((run / "run.json").read_text())["language"]["code"] == "en"
