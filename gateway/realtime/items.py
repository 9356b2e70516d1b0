"""The conversation of a realtime session: its items, in order, as OpenAI's Realtime API shows them.

Items are messages (user, assistant, system) whose content is text or audio with its
transcript. Clients add them (`conversation.item.create`), delete, retrieve and truncate
them; the server adds the user's committed turns and the assistant's replies. What the
text model reads is the list of items as text (`as_messages`).

An assistant reply that was spoken keeps, per sentence, where its audio ends, so a
truncation to `audio_end_ms` (what the client really played before the user barged in)
keeps the transcript of what was heard and drops the rest.
"""

from dataclasses import dataclass, field

import pybase64

from gateway.providers.base import PCM_RATE, TextMessage
from gateway.realtime.protocol import RealtimeError, invalid_type, new_id

ROLES = ("user", "assistant", "system")
# The content part types each role may hold, as OpenAI's conversation items define them.
PART_TYPES = {
    "user": ("input_text", "input_audio"),
    "system": ("input_text",),
    "assistant": ("output_text", "output_audio", "text"),
}
# Audio kept for `conversation.item.retrieve`, per session; older items keep their transcript.
MAX_KEPT_AUDIO_BYTES = 64 * 1024 * 1024


def _ms(pcm_bytes: int) -> int:
    return pcm_bytes * 1000 // (2 * PCM_RATE)


@dataclass
class SpokenPiece:
    """A sentence of a spoken reply: the text it covers and where its audio ends."""

    text: str
    end_ms: int


@dataclass
class Item:
    """One conversation item; `content` is OpenAI's list of parts (audio bytes kept aside)."""

    id: str
    role: str
    content: list[dict]
    status: str = "completed"
    audio: bytes = b""  # pcm16 24 kHz of an audio part, for retrieval
    spoken: list[SpokenPiece] = field(default_factory=list)

    def shown(self, with_audio: bool = False) -> dict:
        """The item as events carry it (audio only in conversation.item.retrieved)."""
        content = [dict(part) for part in self.content]
        if with_audio and self.audio:
            for part in content:
                if part["type"] in ("input_audio", "output_audio"):
                    part["audio"] = pybase64.b64encode(self.audio).decode("ascii")
        return {
            "id": self.id,
            "object": "realtime.item",
            "type": "message",
            "status": self.status,
            "role": self.role,
            "content": content,
        }

    @property
    def text(self) -> str:
        """What the item says, as a text model reads it."""
        pieces = (part.get("text") or part.get("transcript") or "" for part in self.content)
        return " ".join(piece.strip() for piece in pieces if piece and piece.strip())

    @property
    def audio_ms(self) -> int:
        return self.spoken[-1].end_ms if self.spoken else _ms(len(self.audio))


def user_audio_item(item_id: str, transcript: str, pcm: bytes) -> Item:
    return Item(item_id, "user", [{"type": "input_audio", "transcript": transcript}], audio=pcm)


def assistant_item(item_id: str) -> Item:
    return Item(item_id, "assistant", [], status="in_progress")


def finish_assistant_item(item: Item, speaking: bool, text: str, completed: bool) -> None:
    item.status = "completed" if completed else "incomplete"
    part = {"type": "output_audio", "transcript": text} if speaking else {"type": "output_text"}
    if not speaking:
        part["text"] = text
    item.content = [part]


def _client_part(part, role: str, param: str) -> tuple[dict, bytes]:
    """A content part of a client's item, checked; audio parts' pcm returned apart."""
    if not isinstance(part, dict):
        raise invalid_type(param, "an object", part)
    kind = part.get("type")
    if kind not in PART_TYPES[role]:
        raise RealtimeError(
            f"Invalid value: '{kind}'. Supported values for a {role} message are: "
            + ", ".join(f"'{t}'" for t in PART_TYPES[role])
            + ".",
            "invalid_value",
            f"{param}.type",
        )
    if kind == "input_audio":
        from gateway.realtime.audio_buffer import decoded_pcm

        pcm = decoded_pcm(part.get("audio"), f"{param}.audio")
        return {"type": "input_audio", "transcript": None}, pcm
    name = "transcript" if kind == "output_audio" else "text"
    text = part.get(name)
    if not isinstance(text, str):
        raise invalid_type(f"{param}.{name}", "a string", text)
    if kind == "text":  # the beta name of an assistant's text part
        kind = "output_text"
    return {"type": kind, name: text}, b""


def client_item(raw) -> Item:
    """The item of a conversation.item.create, checked (a message; no tool calls)."""
    if not isinstance(raw, dict):
        raise invalid_type("item", "an object", raw)
    if raw.get("type", "message") != "message":
        raise RealtimeError(
            f"Invalid value: '{raw.get('type')}'. Only 'message' items are supported here "
            "(no tools).",
            "invalid_value",
            "item.type",
        )
    role = raw.get("role")
    if role not in ROLES:
        raise RealtimeError(
            f"Invalid value: '{role}'. Supported values are: 'user', 'assistant', 'system'.",
            "invalid_value",
            "item.role",
        )
    parts = raw.get("content")
    if not isinstance(parts, list) or not parts:
        raise RealtimeError(
            "`item.content` must be a non-empty array.", "invalid_value", "item.content"
        )
    content, audio = [], b""
    for index, part in enumerate(parts):
        shown, pcm = _client_part(part, role, f"item.content[{index}]")
        content.append(shown)
        audio += pcm
    item_id = raw.get("id")
    if item_id is not None and (not isinstance(item_id, str) or not 0 < len(item_id) <= 64):
        raise RealtimeError("`item.id` must be a string of 1 to 64 characters.", "invalid_value")
    return Item(item_id or new_id("item"), role, content, audio=audio)


def _not_found(item_id) -> RealtimeError:
    return RealtimeError(
        f"Item with item_id '{item_id}' not found in the conversation.",
        "item_not_found",
        "item_id",
    )


class Items:
    """The conversation's items in order, looked up by id."""

    def __init__(self) -> None:
        self.id = new_id("conv")
        self._items: list[Item] = []

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def last_id(self) -> str | None:
        return self._items[-1].id if self._items else None

    def get(self, item_id) -> Item:
        for item in self._items:
            if item.id == item_id:
                return item
        raise _not_found(item_id)

    def add(self, item: Item, previous_item_id: str | None = None) -> str | None:
        """Insert after `previous_item_id` ("root": first; none: last); the id it follows."""
        if any(existing.id == item.id for existing in self._items):
            raise RealtimeError(
                f"Item with id '{item.id}' already exists.", "item_id_exists", "item.id"
            )
        if previous_item_id is None:
            previous = self.last_id
            self._items.append(item)
        elif previous_item_id == "root":
            previous = None
            self._items.insert(0, item)
        else:
            index = self._items.index(self.get(previous_item_id))
            previous = previous_item_id
            self._items.insert(index + 1, item)
        self._forget_old_audio()
        return previous

    def delete(self, item_id) -> None:
        self._items.remove(self.get(item_id))

    def truncate(self, item_id, content_index, audio_end_ms) -> Item:
        """Cut an assistant audio item to its first `audio_end_ms` of audio."""
        item = self.get(item_id)
        if item.role != "assistant" or not item.content:
            raise RealtimeError(
                "Only assistant message items can be truncated.", "invalid_value", "item_id"
            )
        if content_index != 0:
            raise RealtimeError("`content_index` must be 0.", "invalid_value", "content_index")
        if item.content[0]["type"] != "output_audio":
            raise RealtimeError(
                "Only an item with audio content can be truncated.", "invalid_value", "item_id"
            )
        if isinstance(audio_end_ms, bool) or not isinstance(audio_end_ms, int):
            raise invalid_type("audio_end_ms", "an integer", audio_end_ms)
        if not 0 <= audio_end_ms <= item.audio_ms:
            raise RealtimeError(
                f"Audio content of {item.audio_ms}ms is already shorter than {audio_end_ms}ms.",
                "invalid_value",
                "audio_end_ms",
            )
        item.content[0]["transcript"] = _heard_text(item.spoken, audio_end_ms)
        item.spoken = [piece for piece in item.spoken if piece.end_ms <= audio_end_ms]
        item.audio = item.audio[: audio_end_ms * PCM_RATE // 1000 * 2]
        return item

    def as_messages(self) -> list[TextMessage]:
        return [TextMessage(role=item.role, text=item.text) for item in self._items if item.text]

    def _forget_old_audio(self) -> None:
        kept = 0
        for item in reversed(self._items):
            kept += len(item.audio)
            if kept > MAX_KEPT_AUDIO_BYTES:
                item.audio = b""


def _heard_text(pieces: list[SpokenPiece], audio_end_ms: int) -> str:
    """The transcript of the sentences played by `audio_end_ms`; of the one cut mid-way,
    its words in proportion to how much of it was played."""
    text, start_ms = "", 0
    for piece in pieces:
        if piece.end_ms <= audio_end_ms:
            text += piece.text
        else:
            played = (audio_end_ms - start_ms) / max(1, piece.end_ms - start_ms)
            words = piece.text.split()
            text += " " + " ".join(words[: int(len(words) * played)]) if played > 0 else ""
            break
        start_ms = piece.end_ms
    return text.strip()
