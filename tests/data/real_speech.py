"""Recorded human speech for the data tests and the prepare bench: the telephone prompts Debian
ships for Asterisk (Mexican Spanish, Canadian French and Italian, each read by one professional
voice at 8 kHz) with the texts of their index, joined into long recordings with pauses of varied
length and hold music between some, and written in the formats people bring.

The index texts are written mostly without accents ("contrasena", "numero"), and digits stand for
some spoken numbers: `words_for_wer` compares without diacritics, numbers spelled out in the
recording's language, so that a right transcript scores as right.

Packages: asterisk-core-sounds-{es,fr,it}-wav (the audio), asterisk-core-sounds-{es,fr,it} (the
index, core-sounds-LANG.txt.gz) and asterisk-moh-opsound-wav (the music); `make install` installs
them.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from speech_corpus import word_edits

from voicetune.data.text import spell_out_numbers
from voicetune.demo.recordings import Recording, SpokenStretch

SOUNDS = Path("/usr/share/asterisk/sounds")
INDEX = Path("/usr/share/doc/asterisk-core-sounds-{language}/core-sounds-{language}.txt.gz")
MUSIC = Path("/usr/share/asterisk/moh")
PROMPT_RATE = 8000  # every Asterisk prompt and hold-music file
LANGUAGES = ("es", "fr", "it")
RUSSIAN = "ru"  # a script F5-TTS v1 was not trained on (Cyrillic), for the new-language tests
PACKAGES = [f"asterisk-core-sounds-{lang}{suffix}" for lang in (*LANGUAGES, RUSSIAN) for suffix in ("", "-wav")] + [
    "asterisk-moh-opsound-wav"
]


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str
    samples: np.ndarray  # float32 mono at PROMPT_RATE, leading and trailing silence trimmed

    @property
    def duration(self) -> float:
        return len(self.samples) / PROMPT_RATE


def require_packages(languages=LANGUAGES) -> None:
    missing = [
        lang
        for lang in languages
        if not Path(str(INDEX).format(language=lang)).is_file() or not (SOUNDS / lang).is_dir()
    ]
    if missing or not MUSIC.is_dir():
        raise RuntimeError(
            "the real-speech tests need the Debian packages " + " ".join(PACKAGES) + ": run `make install`"
        )


def read_index(language: str) -> dict[str, str]:
    """name -> text of every prompt in the language's index."""
    texts = {}
    with gzip.open(str(INDEX).format(language=language), "rt", encoding="utf-8-sig") as index:
        for line in index:
            name, colon, text = line.partition(":")
            if colon and not line.startswith(";"):
                texts[name.strip()] = text.strip()
    return texts


def _trim(samples: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return samples[loud[0] : loud[-1] + 1] if len(loud) else samples[:0]


def load_prompts(language: str) -> list[Prompt]:
    """The prompts of `language` that make good test speech, sorted by name: sentences of plain
    words (no "[tones]", no digits, no lost letters), 2 to 12 seconds long, spoken at a speaking rate that says
    the text and the recording agree."""
    prompts = []
    for name, text in sorted(read_index(language).items()):
        path = SOUNDS / language / f"{name}.wav"
        # The Italian index lost its accented letters to "?" ("sar? esattamente"): a "?" before the
        # end is such a word, which no transcript could match.
        lost_letter = "?" in text.rstrip("?")
        if "[" in text or lost_letter or re.search(r"\d", text) or len(text.split()) < 4 or not path.is_file():
            continue
        samples, rate = sf.read(path, dtype="float32")
        samples = _trim(samples)
        seconds = len(samples) / rate
        if rate == PROMPT_RATE and 2.0 <= seconds <= 12.0 and 1.5 <= len(text.split()) / seconds <= 4.5:
            prompts.append(Prompt(name, text, samples))
    return prompts


def music(
    seconds: float, piece: str = "macroform-the_simplicity", offset: float = 30.0, gain: float = 0.5
) -> np.ndarray:
    samples, _ = sf.read(MUSIC / f"{piece}.wav", dtype="float32")
    start = int(offset * PROMPT_RATE)
    return gain * samples[start : start + int(seconds * PROMPT_RATE)]


@dataclass(frozen=True)
class RealRecording:
    """A recording made of prompts: what is said, where, in which language, and its file."""

    recording: Recording
    language: str
    path: Path

    @property
    def text(self) -> str:
        return self.recording.text


def build_real_recording(
    prompts: list[Prompt],
    pauses: list[float],
    language: str,
    path: Path,
    music_after: dict[int, float] | None = None,
    lead_in: float = 0.6,
) -> RealRecording:
    """The prompts one after another at 8 kHz (to be written to `path`), each followed by the next
    pause of `pauses` (in turn), and by `music_after[i]` seconds of hold music (a second of silence around it) after
    prompt i."""
    music_after = music_after or {}
    parts = [np.zeros(int(lead_in * PROMPT_RATE), np.float32)]
    position = len(parts[0])
    stretches = []
    for index, prompt in enumerate(prompts):
        stretches.append(
            SpokenStretch(prompt.text, position / PROMPT_RATE, (position + len(prompt.samples)) / PROMPT_RATE, False)
        )
        gap = np.zeros(int(pauses[index % len(pauses)] * PROMPT_RATE), np.float32)
        parts += [prompt.samples, gap]
        position += len(prompt.samples) + len(gap)
        if index in music_after:
            second = np.zeros(PROMPT_RATE, np.float32)
            tune = music(music_after[index], offset=30.0 + 17 * index)
            parts += [tune, second]
            position += len(tune) + len(second)
    return RealRecording(Recording(np.concatenate(parts), PROMPT_RATE, stretches), language, path)


def _save(recording: RealRecording, path: Path, rate: int, *codec: str) -> None:
    """Write at `rate`, through ffmpeg when `codec` arguments are given (lossy formats)."""
    audio = (
        soxr.resample(recording.recording.samples, PROMPT_RATE, rate)
        if rate != PROMPT_RATE
        else recording.recording.samples
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not codec:
        sf.write(path, audio, rate, subtype="PCM_16")
        return
    source = path.with_suffix(".src.wav")
    sf.write(source, audio, rate, subtype="PCM_16")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), *codec, str(path)], check=True)
    source.unlink()


# name -> (language, first prompt, prompt count, pauses in turn, music after prompt i: seconds, writer)
CORPUS_PLAN = {
    "es/menu.mp3": ("es", 0, 16, [0.45, 0.9, 1.6, 0.6, 0.35, 1.2], {7: 9.0}, (44100, "-ac", "2", "-b:a", "128k")),
    "es/llamada.wav": ("es", 16, 14, [0.7, 0.4, 1.3, 0.5, 2.4], {5: 7.0}, (8000,)),
    "fr/annonce.flac": ("fr", 0, 11, [0.5, 1.1, 0.4, 1.8], {}, (48000,)),
    "it/messaggi.opus": ("it", 0, 11, [0.6, 0.35, 1.4, 0.8], {6: 6.0}, (48000, "-c:a", "libopus", "-b:a", "48k")),
}


def build_real_corpus(folder: Path, plan: dict = CORPUS_PLAN) -> dict[str, RealRecording]:
    """Write the real-speech recordings of `plan` under `folder`; returns what each one holds."""
    require_packages()
    prompts = {lang: load_prompts(lang) for lang in LANGUAGES}
    built = {}
    for name, (language, first, count, pauses, music_after, (rate, *codec)) in plan.items():
        chosen = [prompts[language][(first + i) % len(prompts[language])] for i in range(count)]
        recording = build_real_recording(chosen, pauses, language, folder / name, music_after)
        _save(recording, recording.path, rate, *codec)
        built[name] = recording
    return built


def strip_diacritics(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def words_for_wer(text: str, language: str) -> list[str]:
    """Lower case, numbers as words in `language`, no diacritics, no punctuation: what word
    error rate compares (the index writes "numero" where a transcriber writes "número"; in Russian
    "решетку" where a transcriber writes "решётку")."""
    text, _ = spell_out_numbers(text, language)
    text = strip_diacritics(text.lower()).replace("-", " ").replace("'", " ").replace("’", " ")
    return re.sub(r"[^a-zа-я ]+", " ", text).split()


def clips_wer(recording: RealRecording, clips: list[dict]) -> tuple[int, int]:
    """(word edits, reference words) of a source's clips, in time order, against the index texts
    of the prompts they hold (a prompt is in the clip its middle lies in): the transcripts a
    dataset got for the speech it kept."""
    clips = sorted(clips, key=lambda clip: clip["start"])
    said = " ".join(recording.recording.text_between(clip["start"], clip["end"]) for clip in clips)
    reference = words_for_wer(said, recording.language)
    hypothesis = words_for_wer(" ".join(clip["text"] for clip in clips), recording.language)
    return word_edits(reference, hypothesis), len(reference)


# Turns of an interview: (language of the voice, prompts in the turn). Spanish is the target
# voice (the host, who speaks most); the French and Italian voices are the guests.
INTERVIEW_TURNS = [
    ("es", 3),
    ("fr", 1),
    ("es", 2),
    ("it", 2),
    ("es", 1),
    ("fr", 2),
    ("es", 3),
    ("it", 1),
    ("es", 2),
    ("fr", 1),
    ("es", 2),
    ("it", 1),
    ("es", 3),
    ("fr", 2),
    ("es", 1),
    ("it", 1),
    ("es", 2),
    ("fr", 1),
]
INTERVIEW_PAUSES = [0.5, 1.0, 0.35, 1.4, 0.7, 2.0, 0.45]


@dataclass(frozen=True)
class VoicesRecording:
    """A recording of several voices: each spoken stretch's voice (its prompts' language), in order."""

    recording: RealRecording
    voices: list[str]

    def voices_between(self, start: float, end: float) -> list[str]:
        """The voices of the prompts whose middle lies in [start, end), as `text_between` counts them."""
        return [
            voice
            for stretch, voice in zip(self.recording.recording.stretches, self.voices)
            if start <= (stretch.start + stretch.end) / 2 < end
        ]


def build_interview(
    path: Path,
    turns=INTERVIEW_TURNS,
    pauses=INTERVIEW_PAUSES,
    first: int = 0,
    music_every: int = 5,
    music_seconds: float = 6.0,
) -> VoicesRecording:
    """An interview at 8 kHz written to `path` (wav): turns of the Spanish, French and Italian
    voices with pauses of varied length between prompts (some as short as a speaker change without a
    pause), and hold music after every `music_every`-th turn."""
    require_packages()
    prompts = {lang: load_prompts(lang) for lang in LANGUAGES}
    used = dict.fromkeys(LANGUAGES, first)
    chosen, voices, music_after = [], [], {}
    for turn, (language, count) in enumerate(turns):
        for _ in range(count):
            chosen.append(prompts[language][used[language] % len(prompts[language])])
            voices.append(language)
            used[language] += 1
        if music_every and turn % music_every == music_every - 1:
            music_after[len(chosen) - 1] = music_seconds
    recording = build_real_recording(chosen, pauses, "es", path, music_after)
    _save(recording, path, PROMPT_RATE)
    return VoicesRecording(recording, voices)


def write_prompts(path: Path, language: str, first: int, count: int, pause: float = 0.6) -> RealRecording:
    """`count` prompts of `language` from the `first`-th, one after another, written to `path` (wav):
    a reference recording of that voice."""
    chosen = [load_prompts(language)[first + i] for i in range(count)]
    recording = build_real_recording(chosen, [pause], language, path)
    _save(recording, path, PROMPT_RATE)
    return recording
