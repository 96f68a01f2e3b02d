"""Stage 3, transcribe: faster-whisper (or the offline pocketsphinx fallback), and checking cuts.

Each source is transcribed once, as whisper hears a whole recording: its planned clips are read in
runs of continuous audio (blocks) of up to 24 s, cut only where the voice-activity plan cuts
between clips, so whisper hears every sentence with what was said around it, never a clip packed
beside an unrelated one. The blocks go through faster-whisper's batched pipeline (several windows
decoded at once) with word timestamps, and each clip gets the words said inside it: a clip
boundary lies between clips, in a pause, so the words fall on either side of it.

Where the plan had to cut running speech (no pause long enough), the cut is moved to the nearest
boundary between words that keeps both clips within bounds (transcribe_source). The rare such cut
that no block spans is checked by transcribing a few seconds around it first.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
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
BLOCK_SECONDS = 24.0  # clips are read together up to this long (see _blocks)
BATCH_WINDOWS = 2  # windows decoded together (see WhisperTranscriber)
MAX_BLOCK_GAP = 3.0  # a longer silence (or music left out of the plan) between clips starts a new block
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
        raise UsageError(
            f"--whisper-model {name_or_path}: no such folder; pass a local model folder or a name such as 'small'"
        )
    if candidate.exists():
        if not (candidate / "model.bin").is_file():
            raise UsageError(
                f"--whisper-model {name_or_path}: not a CTranslate2 whisper model folder (no model.bin); "
                "pass a folder made by ct2-transformers-converter, or a model name such as 'small'"
            )
        return WhisperModelRef(
            str(candidate.resolve()), f"{candidate.resolve().name}:{(candidate / 'model.bin').stat().st_size}"
        )
    from faster_whisper.utils import download_model

    try:
        return WhisperModelRef(download_model(name_or_path, local_files_only=True), name_or_path)
    except ValueError as err:  # not a model size faster-whisper knows
        raise UsageError(f"--whisper-model {name_or_path}: {err}; or pass a local model folder") from None
    except Exception:  # noqa: BLE001 - not in the local cache: download it
        pass
    try:
        return WhisperModelRef(download_model(name_or_path), name_or_path)
    except Exception as err:  # noqa: BLE001 - offline, unknown name, HTTP: one usage error that says so
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
    """faster-whisper's model, run over spans of one source's audio in batches of windows.

    The loop is faster-whisper's batched pipeline (`BatchedInferencePipeline.forward`: one window
    per span, no previous-text conditioning, beam search, word timestamps by cross-attention
    alignment) with these changes, which make it about twice as fast on the CPU for the same words:

    - the encoder reads only the frames the batch's longest span holds and some padding (see
      encoder_frames), instead of a fixed 30-second window (CTranslate2 takes fewer than 3000
      frames; the cost of an encoder pass grows faster than its length), one window at a time.
      Spans are batched longest first, two windows of like length at a time: a short window in a
      batch of long ones is read at their length, and batches of 2, 4 or 8 cost the same CPU time
      (measured on recorded speech: what larger batches save in the decoder, the encoder spends on
      padding), while small batches let copies of the model side by side share a file's work. A window
      whose transcript repeats itself (a decoding loop, which a short window with little padding
      can fall into) is read again in whisper's own 30-second window.
    - an undetected language is read from the encoder output of the longest span (whisper's own
      pipeline reads the first 30 seconds of speech), instead of from an encoder pass of its own.
    - with several replicas (copies of the model, each single-threaded), batches run side by side,
      from this source and from others prepared at the same time (`prepare`'s threads).
    """

    name = "whisper"

    def __init__(
        self, model_path: str, threads: int = 1, beam_size: int = 5, batch_size: int = BATCH_WINDOWS, replicas: int = 1
    ):
        """`replicas` copies of the model, each on `threads` threads, decode batches side by side
        (CTranslate2's inter_threads); one is used at a time when 1."""
        from faster_whisper import WhisperModel

        device, compute_type = whisper_device()
        self.model = WhisperModel(
            model_path, device=device, compute_type=compute_type, cpu_threads=threads, num_workers=replicas
        )
        self.beam_size = beam_size
        self.batch_size = batch_size
        self.pool = ThreadPoolExecutor(replicas, thread_name_prefix="whisper") if replicas > 1 else None

    def transcribe_spans(
        self,
        audio: np.ndarray,
        spans: Sequence[tuple[float, float]],
        language: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> tuple[list[Transcript], str | None]:
        """Transcribe the [start, end) spans (seconds, each at most WINDOW_SECONDS, none
        overlapping) of 16 kHz `audio`; returns one transcript per span, its words timed in seconds
        of `audio`, and the language (detected from the longest span when `language` is None).

        The batches go to the model's replicas side by side, in the order they are handed over:
        whichever replica is free takes the next one, whatever source it is from."""
        if not spans:
            return [], language
        fps = self.model.frames_per_second
        lengths = [min(b - a, WINDOW_SECONDS) for a, b in spans]
        order = sorted(range(len(spans)), key=lambda i: -lengths[i])
        batches = _even_batches(order, self.batch_size)
        # The longest span is encoded first, for its language; its batch reuses the encoding.
        longest = self._encode(audio, spans[order[0]], encoder_frames(lengths[order[0]], fps))
        if language is None:
            language = self._language(longest)
        words_of: list[list[Word]] = [[] for _ in spans]
        jobs = [
            (batch, encoder_frames(lengths[batch[0]], fps), longest if index == 0 else None)
            for index, batch in enumerate(batches)
        ]
        self._read(audio, spans, lengths, language, jobs, words_of, progress)
        looped = [i for i in order if _repeats_itself(words_of[i])]
        retries = [(batch, 30 * fps, None) for batch in _even_batches(looped, self.batch_size)]
        self._read(audio, spans, lengths, language, retries, words_of)
        return [_transcript(words) for words in words_of], language

    def _read(
        self,
        audio,
        spans,
        lengths,
        language,
        jobs,
        words_of: list[list[Word]],
        progress: ProgressCallback | None = None,
    ) -> None:
        """Decode each (batch, frames, first encoding) job, on the replicas side by side, into
        `words_of`; `progress` is told as the batches come back, in order."""

        def run(job):
            batch, frames, first = job
            return batch, self._decode(audio, spans, lengths, batch, frames, language, first)

        for done, (batch, words) in enumerate(self.pool.map(run, jobs) if self.pool else map(run, jobs)):
            for i, found in zip(batch, words):
                words_of[i] = found
            if progress:
                progress((done + 1) / len(jobs))

    def _encode(self, audio: np.ndarray, span: tuple[float, float], frames: int) -> np.ndarray:
        """The encoder output of one span of `audio`, read at `frames` feature frames."""
        model = self.model
        return np.asarray(model.encode(_fit(model.feature_extractor(_clip_audio(audio, *span))[..., :-1], frames)))

    def _language(self, encoded: np.ndarray) -> str | None:
        """The language whisper hears in an encoder output ("es"); None for an English-only model."""
        import ctranslate2

        if not self.model.model.is_multilingual:
            return None
        return self.model.model.detect_language(ctranslate2.StorageView.from_array(encoded))[0][0][0][2:-2]  # "<|es|>"

    def _decode(
        self,
        audio: np.ndarray,
        spans: Sequence[tuple[float, float]],
        lengths: list[float],
        batch: list[int],
        frames: int,
        language: str | None,
        first: np.ndarray | None = None,
    ) -> list[list[Word]]:
        """Encode the spans of `batch` at `frames` feature frames each (the first one's encoding
        given, or not), decode them together and time their words: one list of words per span."""
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self.model
        fps = model.frames_per_second
        # One window at a time: on the CPU a batched encoder pass costs more than its windows one by one.
        encoded = [
            first if first is not None and n == 0 else self._encode(audio, spans[i], frames)
            for n, i in enumerate(batch)
        ]
        encoder_output = ctranslate2.StorageView.from_array(np.concatenate(encoded))
        tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language or "en"
        )
        results = model.model.generate(
            encoder_output,
            [model.get_prompt(tokenizer, [], without_timestamps=True) for _ in batch],
            beam_size=self.beam_size,
            max_length=model.max_length,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        )
        segments = [
            [
                {
                    "tokens": result.sequences_ids[0],
                    "start": spans[i][0],
                    "end": spans[i][0] + lengths[i],
                    "seek": spans[i][0] * fps,
                }
            ]
            for i, result in zip(batch, results)
        ]
        model.add_word_timestamps(
            segments,
            tokenizer,
            encoder_output,
            [min(frames, math.ceil(lengths[i] * fps)) for i in batch],
            PREPEND_PUNCTUATIONS,
            APPEND_PUNCTUATIONS,
            0.0,
        )
        return [
            [
                Word(float(w["start"]), float(w["end"]), w["word"], float(w["probability"]))
                for w in segment.get("words", [])
            ]
            for (segment,) in segments
        ]


def _even_batches(order: list[int], most: int) -> list[list[int]]:
    """`order` (spans sorted longest first) cut into the fewest runs of at most `most`, of sizes
    as even as can be, the smaller runs first: spans of like length share a batch (a window is
    read at the length of its batch's longest), and the batches of the longest spans hold fewer
    of them, so that batches cost about the same and copies side by side finish together."""
    count = math.ceil(len(order) / most)
    batches, first = [], 0
    for index in range(count):
        size = len(order) // count + (index >= count - len(order) % count)
        batches.append(order[first : first + size])
        first += size
    return batches


# faster-whisper's defaults: punctuation joined to the word before (or after) it
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
# Past the audio, the encoder reads at least a second of whisper's padding, and a window is at
# least 10 s long: a 5-second window with one second of padding could loop ("tell-tell-tell-..."),
# with two or more none of the tests' windows did; long windows read with one second of padding
# kept the word error rate on 29 minutes of recorded speech (0.134; 0.130 with three, for 7% more time).
ENCODER_PADDING_SECONDS = 1.0
MIN_WINDOW_SECONDS = 10.0
LOOP_COMPRESSION_RATIO = 2.4  # whisper's own threshold: text that gzip shrinks more than this repeats itself


def _repeats_itself(words: list[Word]) -> bool:
    """Whether a transcript is a decoding loop, by whisper's test: its text compresses too well."""
    from faster_whisper.transcribe import get_compression_ratio

    text = "".join(w.text for w in words)
    return len(text) > 40 and get_compression_ratio(text) > LOOP_COMPRESSION_RATIO


def encoder_frames(seconds: float, frames_per_second: int) -> int:
    """How many feature frames the encoder reads for a window of `seconds`: the audio and
    ENCODER_PADDING_SECONDS, MIN_WINDOW_SECONDS at least, an even count (the encoder halves it),
    at most whisper's 30-second window."""
    window = max(seconds + ENCODER_PADDING_SECONDS, MIN_WINDOW_SECONDS)
    return min(30 * frames_per_second, 2 * math.ceil(window * frames_per_second / 2))


def _fit(features: np.ndarray, frames: int) -> np.ndarray:
    """Log-mel `features` cut or zero-padded to `frames` (whisper pads its window with zeros)."""
    if features.shape[-1] >= frames:
        return features[..., :frames]
    return np.pad(features, ((0, 0), (0, frames - features.shape[-1])))


def _span_of(spans: Sequence[tuple[float, float]], time: float) -> int:
    """The span that `time` lies in, or the nearest one (word times wander a little past an edge)."""
    return min(range(len(spans)), key=lambda i: max(spans[i][0] - time, time - spans[i][1], 0.0))


def _transcript(words: list[Word]) -> Transcript:
    probabilities = [w.probability for w in words if w.probability is not None]
    return Transcript(
        "".join(w.text for w in words).strip(), float(np.mean(probabilities)) if probabilities else None, words
    )


class PocketsphinxTranscriber:
    """CMU pocketsphinx with its bundled US English model: offline, fast to load, far less
    accurate than whisper. No confidence."""

    name = "pocketsphinx"
    FILLERS = frozenset({"<s>", "</s>", "<sil>", "[NOISE]", "(NULL)"})

    def __init__(self):
        self._local = threading.local()  # a decoder holds one utterance at a time: one per thread
        self._decoder()  # loaded here once, so that a missing model fails before any file

    def _decoder(self):
        """This thread's decoder (`prepare` transcribes files side by side in threads)."""
        if not hasattr(self._local, "decoder"):
            from pocketsphinx import Decoder

            self._local.decoder = Decoder(samprate=VAD_RATE, loglevel="FATAL")
        return self._local.decoder

    def transcribe_spans(
        self,
        audio: np.ndarray,
        spans: Sequence[tuple[float, float]],
        language: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> tuple[list[Transcript], str | None]:
        transcripts = []
        decoder = self._decoder()
        for index, (start, end) in enumerate(spans):
            pcm = (np.clip(_clip_audio(audio, start, end), -1, 1) * 32767).astype("<i2").tobytes()
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            words = []
            for seg in decoder.seg():
                if seg.word in self.FILLERS or seg.word.startswith("+"):
                    continue
                text = seg.word.split("(")[0]  # "the(2)": an alternative pronunciation of "the"
                # A leading space, as whisper's words have: a transcript is its words joined.
                words.append(Word(start + seg.start_frame / 100, start + (seg.end_frame + 1) / 100, " " + text))
            transcripts.append(_transcript(words))
            if progress:
                progress((index + 1) / len(spans))
        return transcripts, "en"


Transcriber = WhisperTranscriber | PocketsphinxTranscriber


def load_transcriber(
    kind: str, whisper_model_path: str | None, threads: int, beam_size: int, replicas: int = 1
) -> Transcriber | None:
    """The transcriber `--transcriber` names, loaded (None for `none`)."""
    if kind == "whisper":
        if not whisper_model_path:
            raise ValueError("the whisper transcriber needs a model path")
        return WhisperTranscriber(whisper_model_path, threads=threads, beam_size=beam_size, replicas=replicas)
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


def _blocks(clips: list[PlannedClip]) -> list[list[int]]:
    """Runs of consecutive clips, each at most BLOCK_SECONDS long from its first clip's start to
    its last clip's end (a clip longer than that is a block of its own), broken where a long
    silence or music lies between two clips: a run is transcribed as one piece of continuous
    audio, so that each sentence is heard in its context and a word said across a cut is heard
    whole. Why 24 s: on 29 minutes of recorded Spanish, French and Italian, blocks of up to 19 s
    raised the word error rate from 0.129 to 0.145 (less context), blocks of 24 s kept it (0.131)
    for 16% less transcription time than 29 s (the encoder's cost per second grows with the
    window)."""
    blocks: list[list[int]] = []
    for index, clip in enumerate(clips):
        if (
            blocks
            and clip.start - clips[index - 1].end <= MAX_BLOCK_GAP
            and clip.end - clips[blocks[-1][0]].start <= BLOCK_SECONDS
        ):
            blocks[-1].append(index)
        else:
            blocks.append([index])
    return blocks


def _touching(clips: list[PlannedClip], index: int) -> bool:
    """Whether clips[index] ends where the next one starts (a cut with no silence left out between)."""
    return index + 1 < len(clips) and abs(clips[index].end - clips[index + 1].start) < 1e-3


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


def _apply_cut(
    clips: list[PlannedClip],
    cut: _Cut,
    words: list[Word],
    energy: FrameEnergy,
    limits: ClipLimits,
    lo: float,
    hi: float,
) -> None:
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


def _nearest_word_boundary(
    cut: _Cut,
    clips: list[PlannedClip],
    words: list[Word],
    energy: FrameEnergy,
    limits: ClipLimits,
    lo: float,
    hi: float,
) -> float | None:
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
    nearest: float = min(fitting, key=lambda t: abs(t - cut.time))
    return round(nearest, 4)


def transcribe_source(
    clips: list[PlannedClip],
    analysis: np.ndarray,
    energy: FrameEnergy,
    transcriber: Transcriber,
    limits: ClipLimits,
    language: str | None,
    progress: ProgressCallback | None = None,
) -> tuple[list[PlannedClip], list[Transcript], str | None]:
    """Transcribe a source's clips in blocks of continuous audio, moving every cut made in running
    speech out of the word it falls in (word timestamps). Returns the clips (cuts moved, flags
    added), one transcript per clip, and the language.

    Each word goes to the clip its middle lies in (or the nearest clip of its block, for a word
    whose timestamps wander into a pause left out between clips). A cut that cannot move to a
    word boundary with both clips still within bounds stays, and its clips are flagged
    `cut_in_word`."""
    clips = list(clips)
    duration = len(analysis) / VAD_RATE
    probes = _cuts_between_blocks(clips, _blocks(clips))
    for group in _apart(probes):  # rare: running speech longer than a block, or beside speech that was dropped
        windows = [(max(0.0, c.time - PROBE_REACH), min(duration, c.time + PROBE_REACH)) for c in group]
        heard, language = transcriber.transcribe_spans(analysis, windows, language)
        for cut, (lo, hi), transcript in zip(group, windows, heard):
            _apply_cut(clips, cut, transcript.words, energy, limits, lo, hi)
    blocks = _blocks(clips)
    heard, language = transcriber.transcribe_spans(
        analysis, [(clips[b[0]].start, clips[b[-1]].end) for b in blocks], language, progress
    )
    words_of: list[list[Word]] = [[] for _ in clips]
    for block, transcript in zip(blocks, heard):
        lo, hi = clips[block[0]].start, clips[block[-1]].end
        for left, right in zip(block, block[1:]):
            if clips[left].cut_after == CUT_FORCED and _touching(clips, left):
                _apply_cut(clips, _Cut(clips[left].end, left, right), transcript.words, energy, limits, lo, hi)
        spans = [(clips[i].start, clips[i].end) for i in block]
        for word in transcript.words:
            words_of[block[_span_of(spans, (word.start + word.end) / 2)]].append(word)
    return clips, [_transcript(words) for words in words_of], language


def _apart(cuts: list[_Cut]) -> list[list[_Cut]]:
    """The cuts in groups whose probe windows do not overlap (a word heard in two windows at once
    would be given to one of them only)."""
    groups: list[list[_Cut]] = []
    for cut in cuts:
        group = next((g for g in groups if abs(g[-1].time - cut.time) >= 2 * PROBE_REACH), None)
        if group is None:
            groups.append([cut])
        else:
            group.append(cut)
    return groups


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
