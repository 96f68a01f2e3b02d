"""A small real-speech corpus spoken by espeak-ng, for the demo and the tests.

espeak-ng (Debian package `espeak-ng`) turns text into a wav file in a subprocess; nothing is
downloaded. The sentences are the public-domain Harvard sentences.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from voicetune.errors import VoicetuneError

HARVARD_SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.",
    "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.",
    "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.",
    "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.",
    "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.",
    "The wrist was badly strained and hung limp.",
    "The stray cat gave birth to kittens.",
    "The young girl gave no clear response.",
    "The meal was cooked before the bell rang.",
    "What joy there is in living.",
]


def require_espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise VoicetuneError("espeak-ng is not installed: run `sudo apt-get install espeak-ng` (or `make install`)")
    return path


def speak_to_wav(text: str, out: Path, voice: str = "en-us", words_per_minute: int = 165, pitch: int = 50) -> Path:
    """Speak `text` with espeak-ng into a 22.05 kHz mono 16-bit wav at `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [require_espeak(), "-v", voice, "-s", str(words_per_minute), "-p", str(pitch), "-w", str(out), text],
        check=True,
        capture_output=True,
    )
    return out


def write_ljspeech_corpus(
    out_dir: Path,
    n_items: int = 24,
    sample_rate: int = 24000,
    voice: str = "en-us",
    sentences_per_item: int = 1,
    sentences: list[str] | None = None,
) -> Path:
    """Write an LJSpeech-layout folder (wavs/, metadata.csv `id|text|text`) of espeak-ng speech:
    `sentences` (default: the Harvard sentences) in espeak-ng's `voice` (its language, e.g. "ka").

    Rerunning with the same arguments rewrites nothing that is already there.
    """
    sentences = sentences or HARVARD_SENTENCES
    import soundfile as sf
    import soxr

    from voicetune.data.files import write_wav_pcm16

    wavs = out_dir / "wavs"
    wavs.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_items):
        start = (i * sentences_per_item) % len(sentences)
        text = " ".join(sentences[(start + j) % len(sentences)] for j in range(sentences_per_item))
        item_id = f"espeak_{i:04d}"
        target = wavs / f"{item_id}.wav"
        if not target.exists():
            raw = speak_to_wav(text, out_dir / ".espeak" / f"{item_id}.wav", voice=voice)
            audio, rate = sf.read(raw, dtype="float32")
            if rate != sample_rate:
                audio = soxr.resample(audio, rate, sample_rate)
            write_wav_pcm16(target, audio, sample_rate)  # clipped, atomic
            raw.unlink()
        rows.append(f"{item_id}|{text}|{text}")
    shutil.rmtree(out_dir / ".espeak", ignore_errors=True)
    (out_dir / "metadata.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out_dir
