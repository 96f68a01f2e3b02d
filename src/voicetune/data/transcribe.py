"""Stage 3, transcribe: faster-whisper (or the offline pocketsphinx fallback), and checking cuts.

Whisper reads 30-second windows whatever it is given, so clips are packed several to a window
(half a second of silence between them) and each word, which comes back with its time, is given
to the clip it was said in: about three times less compute than one clip per window, with the
text of each clip still what lies inside it.

Clips that touch (cut in running speech, with no pause to leave out between them) are transcribed
together as one block of continuous audio, so that a word said across the cut is heard whole; a
cut that falls inside a word is moved to the nearest boundary between words that keeps both clips
within bounds (transcribe_source). The rare cut that no block spans is checked by transcribing a
few seconds around it first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from voicetune.data.segment import (
    CUT_FORCED,
    VAD_RATE,
    ClipLimits,
    FrameEnergy,
    PlannedClip,
)
from voicetune.errors import UsageError

WINDOW_SECONDS = 29.0  # whisper's window is 30 s; keep a margin for its last, dropped frame
SEPARATOR_SECONDS = 0.5  # silence between two clips packed in one window
PROBE_REACH = 4.0  # seconds of audio on each side of a cut that is checked
WORD_EDGE_MARGIN = 0.03  # a cut this close to a word's edge counts as between words
BOUNDARY_SNAP = 0.08  # a word boundary is snapped to the quietest point this close to it

TRANSCRIBERS = ("whisper", "pocketsphinx", "none")

ProgressCallback = Callable[[float], None]


@dataclass(frozen=True)
class Word:
    start: float  # seconds from the start of the piece of audio that was transcribed
    end: float
    text: str
    probability: float | None = None


@dataclass
class Transcript:
    text: str
    confidence: float | None  # mean word probability (whisper); None where the engine has none
    words: list[Word] = field(default_factory=list)


@dataclass(frozen=True)
class WhisperModelRef:
    """A whisper model as resolved before any work starts: a local folder, and a stable identity."""

    path: str
    identity: str  # what the dataset's settings record: the name, or the folder name and size


def resolve_whisper_model(name_or_path: str) -> WhisperModelRef:
    """Find a local CTranslate2 whisper model, downloading a named one when online.

    Offline with a name that is not cached, this is a usage error that says to pass a local path.
    """
    candidate = Path(name_or_path).expanduser()
    looks_like_path = name_or_path.startswith(("/", "./", "../", "~")) or name_or_path.count("/") > 1
    if looks_like_path and not candidate.exists():
        raise UsageError(f"--whisper-model {name_or_path}: no such folder; pass a local model folder or a name such as 'small'")
    if candidate.exists():
        if not (candidate / "model.bin").is_file():
            raise UsageError(
                f"--whisper-model {name_or_path}: not a CTranslate2 whisper model folder (no model.bin); "
                "pass a folder made by ct2-transformers-converter, or a model name such as 'small'"
            )
        return WhisperModelRef(str(candidate.resolve()), f"{candidate.resolve().name}:{(candidate / 'model.bin').stat().st_size}")
    from faster_whisper.utils import download_model

    try:
        return WhisperModelRef(download_model(name_or_path, local_files_only=True), name_or_path)
    except ValueError as err:  # not a model size faster-whisper knows
        raise UsageError(f"--whisper-model {name_or_path}: {err}; or pass a local model folder") from None
    except Exception:  # not in the local cache: download it
        pass
    try:
        return WhisperModelRef(download_model(name_or_path), name_or_path)
    except Exception as err:
        raise UsageError(
            f"--whisper-model {name_or_path}: cannot download the model ({type(err).__name__}; offline?). "
            "Pass a local CTranslate2 model folder instead, e.g. --whisper-model /path/to/whisper-base-ct2, "
            "or run once with internet access so that it is cached"
        ) from None


def whisper_device() -> tuple[str, str]:
    """(device, compute type): float16 on a CUDA GPU, int8 on the CPU."""
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        return "cuda", "float16"
    return "cpu", "int8"


class WhisperTranscriber:
    """Batched faster-whisper over clips packed into 30-second windows."""

    name = "whisper"

    def __init__(self, model_path: str, threads: int = 1, beam_size: int = 5, batch_size: int = 8):
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        device, compute_type = whisper_device()
        self.model = WhisperModel(model_path, device=device, compute_type=compute_type, cpu_threads=threads)
        self.pipeline = BatchedInferencePipeline(self.model)
        self.beam_size = beam_size
        self.batch_size = batch_size

    def transcribe(self, pieces: Sequence[np.ndarray], language: str | None = None,
                   progress: ProgressCallback | None = None, pack: bool = True) -> tuple[list[Transcript], str | None]:
        """Transcribe 16 kHz pieces (each at most WINDOW_SECONDS); returns their transcripts and the
        language (detected from the first window when `language` is None).

        `pack=False` gives every piece a window of its own: slower, but what is heard in a piece
        then depends on that piece alone (scoring needs this; packed pieces that say the same
        words can lose them to each other)."""
        if not pieces:
            return [], language
        audio, windows, placements = _pack(pieces, pack)
        segments, info = self.pipeline.transcribe(
            audio, language=language, clip_timestamps=windows, batch_size=self.batch_size,
            beam_size=self.beam_size, word_timestamps=True, log_progress=False,
        )
        words_by_piece: list[list[Word]] = [[] for _ in pieces]
        # Segments name their window by `seek`, its start in 10 ms frames (give or take a rounding).
        window_seeks = np.array([window["start"] * self.model.frames_per_second for window in windows])
        done_windows = 0
        for segment in segments:
            window = int(np.argmin(np.abs(window_seeks - segment.seek)))
            for word in segment.words or []:
                piece = _piece_of_word(placements, window, float(word.start), float(word.end))
                if piece is not None:
                    offset = placements[piece][0]
                    words_by_piece[piece].append(
                        Word(float(word.start) - offset, float(word.end) - offset, word.word, float(word.probability))
                    )
            done_windows += 1
            if progress:
                progress(min(1.0, done_windows / len(windows)))
        transcripts = []
        for words in words_by_piece:
            text = "".join(w.text for w in words).strip()
            confidence = float(np.mean([w.probability for w in words])) if words else None
            transcripts.append(Transcript(text, confidence, words))
        return transcripts, info.language


def _pack(pieces: Sequence[np.ndarray], pack: bool = True) -> tuple[np.ndarray, list[dict], list[tuple[float, float, int]]]:
    """Pack pieces into as few windows of at most WINDOW_SECONDS as fit them (first fit, longest
    first), half a second of silence between pieces; with `pack` False, one window per piece.

    Returns the audio, whisper's clip_timestamps (one per window) and each piece's (start, end,
    window index) in the audio, in seconds."""
    limit = int(WINDOW_SECONDS * VAD_RATE)
    gap = int(SEPARATOR_SECONDS * VAD_RATE)
    lengths = [min(len(piece), limit) for piece in pieces]
    contents: list[list[int]] = []  # piece indices per window
    used: list[int] = []  # samples per window, separators included
    for index in sorted(range(len(pieces)), key=lambda i: -lengths[i]):
        for window, filled in enumerate(used):
            if pack and filled + gap + lengths[index] <= limit:
                contents[window].append(index)
                used[window] += gap + lengths[index]
                break
        else:
            contents.append([index])
            used.append(lengths[index])
    separator = np.zeros(gap, np.float32)
    parts: list[np.ndarray] = []
    windows: list[dict] = []
    placements: list[tuple[float, float, int]] = [(0.0, 0.0, 0)] * len(pieces)
    position = 0
    for window, members in enumerate(contents):
        if parts:  # silence between windows too: whisper's timestamps wander a little past an edge
            parts.append(separator)
            position += gap
        start = position
        for number, index in enumerate(members):
            if number:
                parts.append(separator)
                position += gap
            parts.append(np.asarray(pieces[index][:limit], dtype=np.float32))
            placements[index] = (position / VAD_RATE, (position + lengths[index]) / VAD_RATE, window)
            position += lengths[index]
        windows.append({"start": start / VAD_RATE, "end": position / VAD_RATE})
    return np.concatenate(parts), windows, placements


def _piece_of_word(placements: list[tuple[float, float, int]], window: int | None, start: float, end: float) -> int | None:
    """The piece of `window` that a word said over [start, end] belongs to: the one it overlaps
    most, or the nearest (whisper's timestamps wander into the silence around a piece)."""
    best, best_key = None, None
    for index, (piece_start, piece_end, piece_window) in enumerate(placements):
        if window is not None and piece_window != window:
            continue
        overlap = min(end, piece_end) - max(start, piece_start)
        distance = max(piece_start - end, start - piece_end, 0.0)
        key = (overlap > 0, overlap if overlap > 0 else -distance)
        if best_key is None or key > best_key:
            best, best_key = index, key
    if best_key is not None and not best_key[0] and -best_key[1] > SEPARATOR_SECONDS:
        return None  # far from every piece: nothing said in a clip
    return best


class PocketsphinxTranscriber:
    """CMU pocketsphinx with its bundled US English model: offline, fast to load, far less
    accurate than whisper. No confidence."""

    name = "pocketsphinx"
    FILLERS = {"<s>", "</s>", "<sil>", "[NOISE]", "(NULL)"}

    def __init__(self):
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=VAD_RATE, loglevel="FATAL")

    def transcribe(self, pieces: Sequence[np.ndarray], language: str | None = None,
                   progress: ProgressCallback | None = None) -> tuple[list[Transcript], str | None]:
        transcripts = []
        for index, piece in enumerate(pieces):
            pcm = (np.clip(piece, -1, 1) * 32767).astype("<i2").tobytes()
            self.decoder.start_utt()
            self.decoder.process_raw(pcm, full_utt=True)
            self.decoder.end_utt()
            words = []
            for seg in self.decoder.seg():
                if seg.word in self.FILLERS or seg.word.startswith("+"):
                    continue
                text = seg.word.split("(")[0]  # "the(2)": an alternative pronunciation of "the"
                # A leading space, as whisper's words have: a transcript is its words joined.
                words.append(Word(seg.start_frame / 100, (seg.end_frame + 1) / 100, " " + text))
            transcripts.append(Transcript("".join(w.text for w in words).strip(), None, words))
            if progress:
                progress((index + 1) / len(pieces))
        return transcripts, "en"


Transcriber = WhisperTranscriber | PocketsphinxTranscriber


def load_transcriber(kind: str, whisper_model_path: str | None, threads: int, beam_size: int) -> Transcriber | None:
    """The transcriber `--transcriber` names, loaded (None for `none`)."""
    if kind == "whisper":
        return WhisperTranscriber(whisper_model_path, threads=threads, beam_size=beam_size)
    if kind == "pocketsphinx":
        return PocketsphinxTranscriber()
    return None


def _clip_audio(analysis: np.ndarray, start: float, end: float) -> np.ndarray:
    return analysis[max(0, int(round(start * VAD_RATE))) : int(round(end * VAD_RATE))]


@dataclass
class _Cut:
    time: float
    left: int | None  # index of the clip that ends at the cut
    right: int | None  # index of the clip that starts at it


def _touching(clips: list[PlannedClip], index: int) -> bool:
    """Whether clips[index] ends where the next one starts (a cut with no silence left out between)."""
    return index + 1 < len(clips) and abs(clips[index].end - clips[index + 1].start) < 1e-3


def _blocks(clips: list[PlannedClip]) -> list[list[int]]:
    """Runs of touching clips, each at most one whisper window long: a run is transcribed as one
    piece of continuous audio, so that a word said across a cut is heard whole."""
    blocks: list[list[int]] = []
    for index, clip in enumerate(clips):
        if blocks and _touching(clips, index - 1) and clip.end - clips[blocks[-1][0]].start <= WINDOW_SECONDS:
            blocks[-1].append(index)
        else:
            blocks.append([index])
    return blocks


def _cuts_between_blocks(clips: list[PlannedClip], blocks: list[list[int]]) -> list[_Cut]:
    """Cuts in running speech that no block spans: a clip's edge whose neighbour is in another block
    (or was dropped). These are checked by transcribing a few seconds around each."""
    cuts: list[_Cut] = []
    for block in blocks:
        first, last = clips[block[0]], clips[block[-1]]
        if first.cut_before == CUT_FORCED:
            if cuts and cuts[-1].left == block[0] - 1 and abs(cuts[-1].time - first.start) < 1e-3:
                cuts[-1].right = block[0]
            else:
                cuts.append(_Cut(first.start, None, block[0]))
        if last.cut_after == CUT_FORCED:
            cuts.append(_Cut(last.end, block[-1], None))
    return cuts


def _flag(clip: PlannedClip, flag: str) -> PlannedClip:
    return replace(clip, flags=tuple(sorted({*clip.flags, flag})))


def _apply_cut(clips: list[PlannedClip], cut: _Cut, words: list[Word], energy: FrameEnergy, limits: ClipLimits,
               lo: float, hi: float) -> None:
    """Move `cut` out of the word it falls in, if it does; flag its clips when it cannot move.

    A cut at a point as quiet as the recording's background is a pause between words however short,
    and stays: whisper's word timestamps are often a tenth of a second off, energy is not."""
    if energy.level_at(cut.time) <= energy.noise_floor():
        return
    if not any(w.start + WORD_EDGE_MARGIN < cut.time < w.end - WORD_EDGE_MARGIN for w in words):
        return
    new_time = _nearest_word_boundary(cut, clips, words, energy, limits, lo, hi)
    for index in (cut.left, cut.right):
        if index is None:
            continue
        clip = clips[index]
        if new_time is None:
            clips[index] = _flag(clip, "cut_in_word")
        elif index == cut.left:
            clips[index] = replace(clip, end=new_time, speech_end=min(clip.speech_end, new_time))
        else:
            clips[index] = replace(clip, start=new_time, speech_start=max(clip.speech_start, new_time))


def _nearest_word_boundary(cut: _Cut, clips: list[PlannedClip], words: list[Word], energy: FrameEnergy,
                           limits: ClipLimits, lo: float, hi: float) -> float | None:
    """The boundary between two words nearest the cut that keeps the clips around it within bounds."""
    fitting = []
    for before, after in zip(words, words[1:]):
        boundary = (before.end + after.start) / 2
        # Words at the edges of the audio that was transcribed may be cut off by that edge.
        if not lo + 0.3 < boundary < hi - 0.3:
            continue
        snap_lo = max(before.end - BOUNDARY_SNAP, before.start + 0.01)
        snap_hi = min(after.start + BOUNDARY_SNAP, after.end - 0.01)
        time = energy.quietest_point(snap_lo, snap_hi, prefer=boundary) if snap_lo < snap_hi else boundary
        left_ok = cut.left is None or limits.fits(time - clips[cut.left].start)
        right_ok = cut.right is None or limits.fits(clips[cut.right].end - time)
        if left_ok and right_ok:
            fitting.append(time)
    if not fitting:
        return None
    return round(min(fitting, key=lambda t: abs(t - cut.time)), 4)


def transcribe_source(clips: list[PlannedClip], analysis: np.ndarray, energy: FrameEnergy, transcriber: Transcriber,
                      limits: ClipLimits, language: str | None, progress: ProgressCallback | None = None,
                      ) -> tuple[list[PlannedClip], list[Transcript], str | None]:
    """Transcribe a source's clips, moving every cut made in running speech out of the word it
    falls in (word timestamps). Returns the clips (cuts moved, flags added), one transcript per
    clip, and the language.

    Touching clips are transcribed together as one block of continuous audio, and each word goes
    to the clip its middle lies in. A cut that cannot move to a word boundary with both clips
    still within bounds stays, and its clips are flagged `cut_in_word`."""
    clips = list(clips)
    duration = len(analysis) / VAD_RATE
    probes = _cuts_between_blocks(clips, _blocks(clips))
    if probes:  # rare: running speech longer than two clips, or beside speech that was dropped
        windows = [(max(0.0, c.time - PROBE_REACH), min(duration, c.time + PROBE_REACH)) for c in probes]
        heard, language = transcriber.transcribe([_clip_audio(analysis, a, b) for a, b in windows], language)
        for cut, (lo, hi), transcript in zip(probes, windows, heard):
            words = [Word(w.start + lo, w.end + lo, w.text) for w in transcript.words]
            _apply_cut(clips, cut, words, energy, limits, lo, hi)
    blocks = _blocks(clips)
    heard, language = transcriber.transcribe(
        [_clip_audio(analysis, clips[b[0]].start, clips[b[-1]].end) for b in blocks], language, progress
    )
    words_of: list[list[Word]] = [[] for _ in clips]
    for block, transcript in zip(blocks, heard):
        lo, hi = clips[block[0]].start, clips[block[-1]].end
        words = [replace(w, start=w.start + lo, end=w.end + lo) for w in transcript.words]
        for left, right in zip(block, block[1:]):
            if clips[left].cut_after == CUT_FORCED:
                _apply_cut(clips, _Cut(clips[left].end, left, right), words, energy, limits, lo, hi)
        for word in words:
            middle = (word.start + word.end) / 2
            owner = next((i for i in block if middle < clips[i].end), block[-1])
            words_of[owner].append(word)
    transcripts = []
    for words in words_of:
        probabilities = [w.probability for w in words if w.probability is not None]
        text = "".join(w.text for w in words).strip()
        transcripts.append(Transcript(text, float(np.mean(probabilities)) if probabilities else None, words))
    return clips, transcripts, language


def find_existing_transcript(audio_path: Path, cache: dict | None = None) -> tuple[str, str | None] | None:
    """(text, normalized text or None) written beside a recording: AUDIO.txt or AUDIO.lab, or its
    row in a metadata.csv (LJSpeech layout) in its folder or the folder above (for wavs/)."""
    for suffix in (".txt", ".lab"):
        sidecar = audio_path.with_suffix(suffix)
        if sidecar.is_file():
            return sidecar.read_text(encoding="utf-8", errors="replace"), None
    from voicetune.data.ljspeech import read_metadata

    cache = {} if cache is None else cache
    for folder in (audio_path.parent, audio_path.parent.parent):
        metadata = folder / "metadata.csv"
        if metadata not in cache:
            try:
                rows = read_metadata(metadata) if metadata.is_file() else []
            except (OSError, UnicodeDecodeError):
                rows = []
            cache[metadata] = {Path(row.item_id).stem: row for row in rows}
        row = cache[metadata].get(audio_path.stem)
        if row is not None:
            return row.text, row.normalized_text
    return None


def chars_per_second(text: str, seconds: float) -> float:
    return len(text) / seconds if seconds > 0 else math.inf
