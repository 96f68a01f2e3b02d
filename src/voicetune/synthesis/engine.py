"""The synthesis engine: one loaded model speaking any text, the same way for every face.

`synthesize`, `serve`, `narrate` and the studio's Synthesize page all speak through `Engine`:

    normalize   the training text's normalizer (`voicetune.data.text`, as `prepare` uses it):
                unicode NFC, one line, numbers spelled out in the run's language
    plan        the text cut into upstream's chunks (the adapter's `text_chunks`: a byte budget,
                a tokenizer's sentence limit), each with its own seed (seed + index), and the
                characters the model has no token for; for a listener waiting on a stream
                (`quick_start`), the first chunk is the first sentence or clause of at most
                QUICK_START_CHARS characters, and the rest is cut as upstream cuts it
    stream      chunk by chunk, joined with upstream's cross-fade, handing out audio as soon as
                no later chunk can change it; `synthesize` is the whole stream at once

The same text, voice, seed and speed always give the same samples, whether streamed or not.
Synthesis can be cancelled from another thread (a client that left, a time limit): between
chunks, and inside a chunk at the model's next layer call.

`EnginePool` keeps engines loaded across calls (one per checkpoint) and unloads the least
recently used when there are too many or memory runs short.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voicetune.console import say_once
from voicetune.data.language import FALLBACK_LANGUAGE, stale_language_warning
from voicetune.errors import UsageError, VoicetuneError
from voicetune.faults import fail_point

log = logging.getLogger("voicetune.synthesis")

DEFAULT_SEED = 0
DEFAULT_VOICE = "default"  # every model's voice: its run's evaluation reference clip
VOICES_FOLDER = "voices"  # RUN/voices/NAME.wav (+ NAME.txt): a run's own named voices
MIN_SPEED, MAX_SPEED = 0.25, 4.0
REFERENCE_SECONDS = (2.0, 12.0)  # a default voice's clip: long enough to clone, short enough to prompt with
# A streamed request's first chunk: short, so that its audio comes after a fraction of the whole
# synthesis (F5's upstream chunks last ~22 s with the reference; six sentences were 0.68 of it).
QUICK_START_CHARS = 60


class Cancelled(VoicetuneError):
    """Synthesis stopped because its caller cancelled it."""

    exit_code = 1


@dataclass(frozen=True)
class Voice:
    """A named reference clip: what the model imitates (audio at the model's rate) and its words."""

    name: str
    audio: np.ndarray = field(repr=False)
    text: str | None
    source: str  # where the clip came from, for messages


@dataclass
class Plan:
    """What a text becomes before any audio is made."""

    normalized: str
    chunks: list[str]
    seeds: list[int]
    unsayable: list[str]  # characters the model has no token for, sorted
    unread: list[str] = field(default_factory=list)  # numbers left in digits by the normalizer, in order


@dataclass
class Speech:
    audio: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int
    plan: Plan


def describe_characters(chars: list[str], shown: bool = True) -> str:
    """'😀' -> 'U+1F600 (😀)' on a terminal; 'U+1F600' (`shown` False) in an ASCII header."""
    return ", ".join(f"U+{ord(c):04X}" + (f" ({c})" if shown and c.isprintable() else "") for c in chars)


def seed_all(seed: int) -> None:
    """Seed every generator synthesis may draw from (python, numpy, torch and CUDA)."""
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# Which cancel event the synthesis running on this thread answers to (None: not cancellable).
_running = threading.local()


def _check_cancelled(module, args) -> None:
    event = getattr(_running, "cancel", None)
    fail_point("layer", event)  # tests: an exception or a stall inside a chunk, at the K-th layer call
    if event is not None and event.is_set():
        raise Cancelled("synthesis cancelled")


class Engine:
    """A trained model loaded once, speaking text the way its training text was written."""

    def __init__(self, trained, nfe: int | None = None, name: str | None = None):
        self.trained = trained
        self.adapter = trained.adapter
        self.model = trained.model
        self.name = name or trained.checkpoint.parent.parent.name
        self.language = getattr(trained.config, "language", None) or FALLBACK_LANGUAGE
        stale = stale_language_warning(Path(trained.checkpoint).parent.parent, f"model {self.name}")
        if stale:  # a run made before runs took their dataset's language
            say_once(stale, logging.WARNING, log.name)
        self.sample_rate = int(self.adapter.sample_rate)
        from voicetune.synthesis.inference import set_sampling_steps

        set_sampling_steps(self.adapter, nfe)
        self.lock = threading.Lock()  # one synthesis at a time on one model
        self._hooks_installed = False
        # The model runs on a thread of its own, as upstream's infer_batch_process runs it (on a
        # busy CPU, torch's thread team of the main thread was measured 2-3x slower: bench/synth_speed.py).
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"synthesis-{self.name}")

    @classmethod
    def load(
        cls, target: Path, nfe: int | None = None, device: str | None = None, weights: str | None = None
    ) -> Engine:
        """Load a run's best checkpoint (or a checkpoint, or the run of a RUN/ready folder) with
        `weights` (ema or raw; None: the weights its score chose)."""
        import torch

        from voicetune.synthesis.inference import load_trained_model

        target = checkpoint_target(target)
        device = device or ("cuda" if torch.cuda.is_available() else None)
        trained = load_trained_model(target, device=device, weights=weights)
        return cls(trained, nfe=nfe, name=model_name(target))

    # ---- voices ---------------------------------------------------------------------------------

    def voice(self, path: Path, text: str | None = None, name: str = "custom", flag: str = "--ref") -> Voice:
        """A reference clip read, mono, at the model's rate, with its transcript where the model reads it."""
        from voicetune.data.ingest import read_reference

        path = Path(path)
        if not path.is_file():
            raise UsageError(f"{flag} {path}: no such file; give a wav of the voice to clone (a few seconds)")
        if self.adapter.needs_ref_text and not (text and text.strip()):
            raise UsageError(
                f"{flag} {path}: {self.adapter.name} needs the words spoken in the clip; give its transcript "
                "(--ref-text, or NAME=WAV:TRANSCRIPT)"
            )
        audio, rate = read_reference(path)
        if rate != self.sample_rate:
            import soxr

            audio = soxr.resample(audio, rate, self.sample_rate).astype(np.float32)
        return Voice(name, np.asarray(audio, dtype=np.float32).reshape(-1), text.strip() if text else None, str(path))

    def voice_names(self) -> list[str]:
        """`default` and the run's own voices (RUN/voices/)."""
        return list(dict.fromkeys([DEFAULT_VOICE, *run_voices(self.trained.checkpoint)]))

    def named_voice(self, name: str, flag: str = "--voice") -> Voice:
        """A voice by name: one of the run's own (RUN/voices/NAME.wav), or `default`."""
        own = run_voices(self.trained.checkpoint)
        if name in own:
            clip, transcript = own[name], own[name].with_suffix(".txt")
            text = transcript.read_text(encoding="utf-8").strip() if transcript.is_file() else None
            return self.voice(clip, text, name=name, flag=f"{flag} {name} ({clip})")
        if name != DEFAULT_VOICE:
            raise UsageError(
                f"{flag} {name}: {self.name} has no voice of that name; its voices: {', '.join(self.voice_names())} "
                f"(add one as {VOICES_FOLDER}/{name}.wav with {name}.txt, its transcript, in the run folder)"
            )
        voice = self.default_voice()
        if voice is None:
            raise UsageError(
                f"{self.name} has no default voice (no evaluation reference in run.json and no dataset clip "
                f"of 2-12 s); put one in the run folder as {VOICES_FOLDER}/default.wav with default.txt"
            )
        return voice

    def default_voice(self) -> Voice | None:
        """The run's evaluation reference clip and transcript; else the first training clip of its
        dataset that is 2 to 12 s long; None when neither can be found."""
        clip = default_reference(self.trained.checkpoint, getattr(self.trained.config, "data", None))
        if clip is None:
            return None
        return self.voice(Path(clip[0]), clip[1], name="default")

    # ---- text -----------------------------------------------------------------------------------

    def normalize(self, text: str) -> str:
        """`text` as `prepare` writes a transcript the model trains on, numbers spelled out."""
        from voicetune.data.text import normalize_transcript

        return normalize_transcript(text, self.language, numbers_to_words=True)[1]

    def plan(
        self, text: str, voice: Voice, seed: int = DEFAULT_SEED, speed: float = 1.0, quick_start: bool = False
    ) -> Plan:
        """Normalize and chunk `text`; names the characters the model cannot say. `quick_start`
        (a stream someone listens to): a short first chunk (`first_piece`), then upstream's chunks;
        without it the chunks are upstream's alone (narrate, scoring and files keep their audio)."""
        if not MIN_SPEED <= speed <= MAX_SPEED:
            raise UsageError(f"--speed {speed}: give a speed from {MIN_SPEED} to {MAX_SPEED}")
        self.adapter.spoken_language(self.model, self.language)  # a language the model lacks: refused now
        normalized = self.normalize(text)
        if not normalized:
            raise UsageError("the text to speak is empty")
        first, rest = first_piece(normalized) if quick_start else ("", normalized)
        chunks = [first] if first else []
        if rest:
            chunks += self.adapter.text_chunks(rest, voice.audio, voice.text, speed, self.language)
        unsayable = sorted(self.adapter.unsayable(normalized, self.language))
        if unsayable:
            say_once(
                f"{self.name}: the model has no sound for {describe_characters(unsayable)}; "
                "they are skipped (write them as words)",
                logging.WARNING,
                log.name,
            )
        from voicetune.data.text import unread_digits

        unread = unread_digits(normalized)
        if unread:
            say_once(
                f"{self.name}: numbers left in digits are read digit by digit or skipped: {', '.join(unread)} "
                "(write them as words)",
                logging.WARNING,
                log.name,
            )
        return Plan(normalized, chunks, [seed + i for i in range(len(chunks))], unsayable, unread)

    # ---- audio ----------------------------------------------------------------------------------

    def speak_chunk(
        self, chunk: str, seed: int, voice: Voice, speed: float = 1.0, cancel: threading.Event | None = None
    ) -> np.ndarray:
        """One chunk, seeded: the same chunk and seed give the same samples. `cancel` set from
        another thread stops it at the model's next layer call (raises Cancelled)."""
        if cancel is not None:
            self._install_cancel_hooks()
        return self._thread.submit(self._speak_chunk, chunk, seed, voice, speed, cancel).result()

    def _speak_chunk(self, chunk: str, seed: int, voice: Voice, speed: float, cancel: threading.Event | None):
        import torch

        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        _running.cancel = cancel
        try:
            # `speaking`: the adapter resets what the model keeps between layer calls, however the
            # chunk ends (a cancel raises inside a layer call), so the next request meets a fresh model.
            with torch.random.fork_rng(devices=devices), torch.inference_mode(), self.adapter.speaking(self.model):
                seed_all(seed)
                audio = self.adapter.synthesize_chunk(self.model, chunk, voice.audio, voice.text, speed, self.language)
                return np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
        finally:
            _running.cancel = None

    def stream(
        self,
        plan: Plan,
        voice: Voice,
        speed: float = 1.0,
        cancel: threading.Event | None = None,
        on_chunk: Callable[[int, np.ndarray], None] | None = None,
    ) -> Iterator[np.ndarray]:
        """The plan's audio, piece by piece as chunks are done, cross-faded as upstream joins them.

        `cancel` set from another thread stops the work (raises Cancelled); `on_chunk(i, audio)`
        sees each chunk's own audio before it is joined."""
        from voicetune.models.base import CrossFader

        fader = CrossFader(int(self.adapter.cross_fade_seconds * self.sample_rate))
        with self.lock:
            for index, (chunk, seed) in enumerate(zip(plan.chunks, plan.seeds)):
                fail_point("chunk", cancel)  # tests: an exception or a stall before the K-th chunk
                if cancel is not None and cancel.is_set():
                    raise Cancelled("synthesis cancelled")
                audio = self.speak_chunk(chunk, seed, voice, speed, cancel)
                if on_chunk is not None:
                    on_chunk(index, audio)
                piece = fader.add(audio)
                if len(piece):
                    yield piece
        tail = fader.finish()
        if len(tail):
            yield tail

    def synthesize(self, text: str, voice: Voice, seed: int = DEFAULT_SEED, speed: float = 1.0) -> Speech:
        """The whole of `text` spoken in `voice`."""
        plan = self.plan(text, voice, seed, speed)
        pieces = list(self.stream(plan, voice, speed))
        audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
        return Speech(audio, self.sample_rate, plan)

    def _install_cancel_hooks(self) -> None:
        # Every layer call checks the running synthesis's cancel event: a cancelled request stops
        # within one network evaluation, not at the end of a chunk that may take a minute.
        if not self._hooks_installed:
            for module in self.model.modules():
                module.register_forward_pre_hook(_check_cancelled)
            self._hooks_installed = True

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.model.state_dict().values())

    def unload(self) -> None:
        self._thread.shutdown(wait=True)
        self.model.to("cpu")
        self.model = None
        self.trained = None


_SENTENCE_END = re.compile(r"(?<=[.!?;。！？；])\s+")
_CLAUSE_END = re.compile(r"(?<=[,:，：、—–])\s+")


def first_piece(text: str, limit: int = QUICK_START_CHARS) -> tuple[str, str]:
    """(the first chunk of a stream, the rest): the first sentence when it has at most `limit`
    characters, else its longest run of whole clauses that does, else its words up to `limit`;
    the whole text when it is that short."""
    if len(text) <= limit:
        return text, ""
    sentence = _SENTENCE_END.split(text, maxsplit=1)[0]
    if len(sentence) > limit:
        cut = 0
        for match in _CLAUSE_END.finditer(sentence):
            if match.start() > limit:
                break
            cut = match.start()
        if not cut:
            cut = sentence.rfind(" ", 0, limit + 1)
        sentence = sentence[:cut] if cut > 0 else sentence[:limit]
    return sentence.strip(), text[len(sentence) :].strip()


# ---- what a target is ---------------------------------------------------------------------------


def checkpoint_target(target: Path) -> Path:
    """A run, a checkpoint, or a run's ready/ folder (the export of its best checkpoint: the run
    itself is loaded, so the weights are the same and nothing upstream-specific is needed)."""
    target = Path(target)
    if not target.exists():
        raise UsageError(f"{target}: no such run, checkpoint or ready/ folder; `voicetune ckpt list RUN` lists them")
    if target.name == "ready" and (target.parent / "checkpoints").is_dir():
        return target.parent
    return target


def model_name(target: Path) -> str:
    """The name a target is served under: its run folder's name."""
    target = Path(target).resolve()
    if (target / "manifest.json").is_file():  # RUN/checkpoints/step_N
        return target.parent.parent.name
    if target.name == "ready":
        return target.parent.name
    return target.name


def run_voices(target: Path) -> dict[str, Path]:
    """The run's own named voices, name -> clip: RUN/voices/NAME.wav (or .flac, .ogg, .mp3), with
    NAME.txt its transcript (for models that read it; read when the voice is used), for a run, one of its
    checkpoints or its ready/ folder. A voice named `default` stands in for the run's evaluation
    reference."""
    from voicetune.data.ljspeech import AUDIO_SUFFIXES

    target = Path(target)
    run = next((p for p in (target, target.parent, target.parent.parent) if (p / "run.json").is_file()), None)
    folder = run / VOICES_FOLDER if run is not None else None
    if folder is None or not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    for clip in sorted(folder.iterdir()):
        if clip.is_file() and clip.suffix.lower() in AUDIO_SUFFIXES:
            found.setdefault(clip.stem, clip)
    return found


def default_reference(checkpoint: Path, dataset: str | Path | None) -> tuple[str, str] | None:
    """(clip, transcript) of the run's evaluation reference, else of its dataset's first training
    clip of 2 to 12 s."""
    run = Path(checkpoint).parent.parent
    try:
        stored = json.loads((run / "run.json").read_text(encoding="utf-8")).get("eval_set") or {}
        chosen = stored.get("set") or {}
        if chosen.get("ref_audio") and Path(chosen["ref_audio"]).is_file():
            return chosen["ref_audio"], chosen.get("ref_text") or ""
    except (OSError, ValueError):
        pass
    if not dataset or not Path(dataset).is_dir():
        return None
    import soundfile as sf

    from voicetune.data.ljspeech import read_ljspeech

    try:
        train, val = read_ljspeech(Path(dataset), 0.1)
    except (OSError, ValueError, VoicetuneError):
        return None
    for item in sorted(train or val, key=lambda i: i.item_id):
        try:
            seconds = sf.info(str(item.audio_path)).duration
        except RuntimeError:
            continue
        if REFERENCE_SECONDS[0] <= seconds <= REFERENCE_SECONDS[1]:
            return str(item.audio_path), item.text
    return None


# ---- engines kept loaded ------------------------------------------------------------------------


class EnginePool:
    """Engines kept loaded by target, the least recently used unloaded first when more than
    `max_loaded` are loaded or when free memory would not hold one more of the largest."""

    def __init__(self, max_loaded: int = 2, loader: Callable[[Path, int | None, str | None], Engine] | None = None):
        self.max_loaded = max(1, int(max_loaded))
        self._loader = loader or (lambda target, nfe, weights: Engine.load(target, nfe=nfe, weights=weights))
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._lock = threading.Lock()
        self.unloaded: list[str] = []  # targets unloaded so far, oldest first (shown by /health)

    def get(self, target: Path, nfe: int | None = None, weights: str | None = None) -> Engine:
        """The engine of `target` (sampling with `nfe` steps where the model has them; `weights` ema or raw, None
        for the ones its score chose), loaded on first use."""
        key = self._key(target, nfe, weights)
        with self._lock:
            engine = self._engines.get(key)
            if engine is not None:
                self._engines.move_to_end(key)
                return engine
            self._make_room()
            return self._load(key, target, nfe, weights)

    def reload(self, target: Path, nfe: int | None = None, weights: str | None = None) -> Engine:
        """`target`'s engine unloaded (after any synthesis in progress) and loaded again from its
        checkpoint: a model in whatever state a failure left it becomes a freshly loaded one. A
        load that fails leaves it unloaded and raises."""
        key = self._key(target, nfe, weights)
        with self._lock:
            old = self._engines.pop(key, None)
            if old is not None:
                with old.lock:
                    old.unload()
                self._release_memory()
            self._make_room()
            return self._load(key, target, nfe, weights)

    @staticmethod
    def _key(target: Path, nfe: int | None, weights: str | None) -> str:
        return f"{Path(target).resolve()}" + (f"@nfe={nfe}" if nfe else "") + (f"@weights={weights}" if weights else "")

    def _load(self, key: str, target: Path, nfe: int | None, weights: str | None) -> Engine:
        fail_point("load")  # tests: a load (or reload) that fails
        engine = self._loader(Path(target), nfe, weights)
        self._engines[key] = engine
        return engine

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._engines)

    def _make_room(self) -> None:
        largest = max((e.memory_bytes() for e in self._engines.values()), default=0)
        while self._engines and (len(self._engines) >= self.max_loaded or available_memory() < 2 * largest):
            key, engine = self._engines.popitem(last=False)
            with engine.lock:  # never under a synthesis in progress
                engine.unload()
            self.unloaded.append(key)
            log.info("unloaded %s (least recently used)", key)
        self._release_memory()

    @staticmethod
    def _release_memory() -> None:
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


def available_memory() -> int:
    """Bytes a new model may use: free GPU memory when there is a GPU, else available RAM."""
    import psutil
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.mem_get_info()[0])
    return int(psutil.virtual_memory().available)


_pool: EnginePool | None = None


def shared_pool() -> EnginePool:
    """This process's engines (`synthesize_to_file` and the studio load each checkpoint once)."""
    global _pool
    if _pool is None:
        _pool = EnginePool()
    return _pool


def synthesize_to_file(
    target: Path,
    text: str,
    ref: Path | None,
    out: Path,
    ref_text: str | None = None,
    seed: int = 0,
    speed: float = 1.0,
    language: str | None = None,
    nfe: int | None = None,
    weights: str | None = None,
    on_voice: Callable[[Voice], None] | None = None,
) -> Path:
    """Speak `text` in the voice of `ref` (None: the run's default voice, as serve and narrate use
    it; `on_voice` is told which clip) with a trained checkpoint; write a 16-bit wav.

    Through the synthesis engine of this process: a checkpoint is loaded once however many calls."""
    from voicetune import fsio
    from voicetune.synthesis.formats import encode

    if not text.strip():
        raise UsageError("--text is empty; give the text to speak")
    out = Path(out)
    if ref is not None and not Path(ref).is_file():
        raise UsageError(f"--ref {ref}: no such file; give a wav of the voice to clone (a few seconds)")
    if ref is None and ref_text:
        raise UsageError("--ref-text without --ref: give the clip it transcribes with --ref")
    if out.is_dir():
        raise UsageError(f"--out {out}: is a folder; give the path of the wav file to write")
    if not Path(target).exists():
        raise UsageError(
            f"--checkpoint {target}: no such run or checkpoint folder; `voicetune ckpt list RUN` lists them"
        )
    from voicetune.synthesis.inference import check_weights

    check_weights(weights)
    # Every argument is checked before the model is loaded (seconds to minutes for real models).
    engine = shared_pool().get(checkpoint_target(Path(target)), nfe, weights)
    if language and language != engine.language:
        engine.language = language
    voice = engine.voice(Path(ref), ref_text) if ref is not None else engine.named_voice(DEFAULT_VOICE, flag="--ref")
    if on_voice is not None:
        on_voice(voice)
    speech = engine.synthesize(text, voice, seed=seed, speed=speed)
    fsio.atomic_write_bytes(out, encode(speech.audio, speech.sample_rate, "wav"))
    return out
