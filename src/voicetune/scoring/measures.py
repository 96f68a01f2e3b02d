"""The three measures, each a model loaded once and run on batches of 16 kHz mono clips.

- `Intelligibility`: faster-whisper transcribes the clips (prepare's `WhisperTranscriber`, each
  clip in a window of its own, windows batched), and the transcription is compared with the text
  that was meant: word and character error rates (`scoring.text`).
- `SpeakerSimilarity`: resemblyzer's GE2E speaker encoder (its weights ship in its wheel); every
  clip becomes an L2-normed 256-dim embedding, and similarity is the cosine of two embeddings
  (about 0.95 and above for one voice, lower for another; cosines of these embeddings are never
  negative).
- `Quality`: DNSMOS P.835 (Microsoft's ONNX models shipped in `speechmos`): the predicted overall
  mean opinion score of a listener, 1 (bad) to 5 (excellent), lowered by noise, music, clipping
  and artefacts.

No model code of voicetune is here: these score any audio, real or synthesized.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence

import numpy as np

log = logging.getLogger("voicetune.scoring")

SCORING_RATE = 16000  # whisper, the GE2E encoder and DNSMOS all read 16 kHz
ENCODER_BATCH = 64  # 1.6-second partial utterances per forward pass of the speaker encoder
DNSMOS_SECONDS = 9.01  # DNSMOS scores 9.01-second windows, one second apart
# Windows per ONNX run. One: a batch of 16 windows held 1.9 GB in onnxruntime's memory arena (its
# intermediate tensors scale with the batch; f5-tiny training with scoring peaked at 5 GB, issue 29),
# and ran no faster on CPU (8.4 s of CPU for 16 windows in one batch, 7.9 s one by one).
DNSMOS_BATCH = 1


def scoring_threads() -> int:
    """Threads for the CPU models: the cores this process may use, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


@contextlib.contextmanager
def torch_threads(count: int | None = None) -> Iterator[None]:
    """Run a block on `count` torch intra-op threads (None: as many as now), and give the caller
    its own thread count back afterwards, whatever the block did.

    Why: CTranslate2 (whisper) sets the OpenMP thread count, which torch shares, when it loads a
    model. A training process on one thread (OMP_NUM_THREADS=1) that scored its first milestone
    went on training and synthesizing on two threads, and a torch result on the CPU depends on its
    thread count (how sums are split): the same checkpoint then made other audio in a resumed
    process, which whisper heard differently, and the resumed weights drifted from the straight
    run's. Every scorer model is loaded and run inside this block."""
    import torch

    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Intelligibility:
    """Whisper transcription and error rates against the intended text."""

    name = "intelligibility"

    def __init__(self, whisper_model: str, threads: int | None = None, beam_size: int = 5):
        from voicetune.data.transcribe import WhisperTranscriber, resolve_whisper_model

        self.model = resolve_whisper_model(whisper_model)
        self.transcriber = WhisperTranscriber(
            self.model.path, threads=threads or scoring_threads(), beam_size=beam_size
        )

    def transcribe(self, clips: Sequence[np.ndarray], language: str | None) -> list[str]:
        """Transcriptions of 16 kHz clips (see `transcripts`)."""
        return [t.text for t in self.transcripts(clips, language)]

    def transcripts(self, clips: Sequence[np.ndarray], language: str | None) -> list:
        """Transcripts (text and timed words, in seconds from each clip's start) of 16 kHz clips
        (each read up to whisper's 29-second window), each clip a window of its own (windows
        batched), so that a clip's transcription never depends on the others: the clips are laid
        end to end with a second of silence between them, and each clip's span is one of
        whisper's clip timestamps."""
        from dataclasses import replace

        from voicetune.data.transcribe import WINDOW_SECONDS

        limit = int(WINDOW_SECONDS * SCORING_RATE)
        gap = np.zeros(SCORING_RATE, np.float32)
        parts, spans, position = [], [], 0
        for clip in clips:
            clip = np.asarray(clip, np.float32)[:limit]
            parts += [clip, gap]
            spans.append((position / SCORING_RATE, (position + len(clip)) / SCORING_RATE))
            position += len(clip) + len(gap)
        transcripts, _ = self.transcriber.transcribe_spans(np.concatenate(parts), spans, language)
        for transcript, (start, _) in zip(transcripts, spans):
            transcript.words = [replace(w, start=w.start - start, end=w.end - start) for w in transcript.words]
        return transcripts


class SpeakerSimilarity:
    """Speaker embeddings of resemblyzer's GE2E encoder, computed in batches."""

    name = "similarity"

    def __init__(self, device: str | None = None):
        import warnings

        import torch

        with warnings.catch_warnings():  # resemblyzer imports a scipy namespace deprecated in 1.x
            warnings.simplefilter("ignore", DeprecationWarning)
            from resemblyzer import VoiceEncoder

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.encoder = VoiceEncoder(device=device, verbose=False)
        self.encoder.eval()

    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """(len(clips), 256) L2-normed embeddings of 16 kHz clips.

        resemblyzer's `embed_utterance` one clip at a time, batched: each clip is cut into 1.6 s
        partial utterances (the encoder's training length), all partials of all clips go through
        the encoder together, and a clip's embedding is the normed mean of its partials'."""
        import torch
        from resemblyzer import audio as ge2e_audio

        mels: list[np.ndarray] = []
        owners: list[int] = []
        for index, clip in enumerate(clips):
            wav = ge2e_audio.preprocess_wav(np.asarray(clip, np.float32))  # loudness, long silences trimmed
            if len(wav) == 0:  # nothing voiced at all: embed the clip as it is
                wav = np.asarray(clip, np.float32)
            wav_slices, mel_slices = self.encoder.compute_partial_slices(len(wav), rate=1.3, min_coverage=0.75)
            if wav_slices[-1].stop >= len(wav):
                wav = np.pad(wav, (0, wav_slices[-1].stop - len(wav)))
            mel = ge2e_audio.wav_to_mel_spectrogram(wav)
            mels.extend(mel[s] for s in mel_slices)
            owners.extend([index] * len(mel_slices))
        if not mels:
            return np.zeros((0, 256), np.float32)
        partials = []
        with torch.no_grad():
            for first in range(0, len(mels), ENCODER_BATCH):
                batch = torch.from_numpy(np.stack(mels[first : first + ENCODER_BATCH])).to(self.encoder.device)
                partials.append(self.encoder(batch).cpu().numpy())
        partial_embeddings = np.concatenate(partials)
        owners_array = np.asarray(owners)
        embeddings = np.stack([partial_embeddings[owners_array == i].mean(axis=0) for i in range(len(clips))])
        return normed(embeddings)


def normed(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    vectors = np.asarray(vectors, np.float64)
    lengths = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.where(lengths > 0, lengths, 1.0)).astype(np.float32)


def centroid(embeddings: np.ndarray) -> np.ndarray:
    """The normed mean of embeddings: one voice from several clips of it."""
    return normed(np.asarray(embeddings).mean(axis=0))


def cosine(embeddings: np.ndarray, to: np.ndarray) -> np.ndarray:
    """Cosine similarity of each normed embedding (rows) with one normed embedding."""
    return np.asarray(embeddings, np.float64) @ np.asarray(to, np.float64)


class Quality:
    """DNSMOS overall quality (P.835 OVRL) of 16 kHz clips."""

    name = "dnsmos"

    def __init__(self, threads: int | None = None):
        import onnxruntime as ort
        from speechmos import dnsmos

        folder = os.path.join(os.path.dirname(dnsmos.__file__), "dnsmos_models")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or scoring_threads()
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(os.path.join(folder, "sig_bak_ovr.onnx"), options, providers=providers)
        # speechmos's own class, for its polynomial calibration of the raw scores.
        self.calibration = dnsmos.DNSMOS.__new__(dnsmos.DNSMOS)
        self.count_repetitions = False  # True: speechmos's windows of a short clip (bench/eval_cost.py's before)

    def mos(self, clips: Sequence[np.ndarray]) -> list[float]:
        """Predicted overall MOS of each clip: 9.01 s windows one second apart, a short clip
        repeated to fill one, as speechmos's `dnsmos.run` computes it, except that a clip shorter
        than a window is rated in one window. speechmos counts the windows of the repeated audio,
        so a 3 s clip (doubled to 12 s) was rated three times, in windows that hold the same 3 s
        rotated: four windows per take of an evaluation sentence, 0.24 s each on two cores, 8 of a
        milestone's 18 s (issue 29). One window changes a clip's score by 0.03 on average (0.21 at
        most, on a 0.2 s clip; 40 Spanish prompts) and keeps their order (rank correlation 0.97)."""
        length = int(DNSMOS_SECONDS * SCORING_RATE)
        windows, owners = [], []
        for index, clip in enumerate(clips):
            audio = np.clip(np.asarray(clip, np.float32), -1.0, 1.0)
            if len(audio) == 0:
                audio = np.zeros(SCORING_RATE, np.float32)
            heard = len(audio)  # the windows are counted on the clip, not on its repetitions
            while len(audio) < length:
                audio = np.concatenate([audio, audio])
            counted = len(audio) if self.count_repetitions else heard
            hops = max(1, int(np.floor(counted / SCORING_RATE) - DNSMOS_SECONDS) + 1)
            for hop in range(hops):
                segment = audio[hop * SCORING_RATE : hop * SCORING_RATE + length]
                if len(segment) == length:
                    windows.append(segment)
                    owners.append(index)
        raw = []
        for first in range(0, len(windows), DNSMOS_BATCH):
            batch = np.stack(windows[first : first + DNSMOS_BATCH]).astype(np.float32)
            raw.append(self.session.run(None, {"input_1": batch})[0])
        scores = np.concatenate(raw) if raw else np.zeros((0, 3), np.float32)
        overall = np.array([self.calibration.get_polyfit_val(*row, False)[2] for row in scores], np.float64)
        owners_array = np.asarray(owners)
        return [float(overall[owners_array == i].mean()) for i in range(len(clips))]
