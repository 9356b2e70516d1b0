"""Server turn detection on a socket: where the user's turn is, and what of it is heard.

`Listening` feeds the input audio to the session's `TurnDetector` (server_vad or
semantic_vad) and holds the turn being spoken: its item id (named in speech_started
already), its admitted ledger call, and its pieces transcribed at the speaker's pauses.
It also keeps the idle clock for `idle_timeout_ms`. Everything is measured on the
session's audio clock (the audio appended so far), like OpenAI's `audio_start_ms`.
"""

import asyncio

from gateway.lifecycle import MeteredCall
from gateway.realtime.audio_buffer import AudioBuffer
from gateway.realtime.hearing import PAUSE_CUT_MS, UserTurn
from gateway.realtime.protocol import new_id
from gateway.realtime.vad import SpeechStarted, SpeechStopped, TurnDetection, TurnDetector


class Listening:
    def __init__(self, settings: TurnDetection | None = None, clock_ms: int = 0) -> None:
        self.settings = settings
        self.detector = TurnDetector(settings) if settings is not None else None
        self.offset_ms = clock_ms  # where the detector's own clock starts on the session's
        self.item_id: str | None = None
        self.turn: UserTurn | None = None
        self.call: MeteredCall | None = None
        self.idle_since: int | None = None  # when the last response ended
        self._hinted: list[SpeechStarted | SpeechStopped] = []  # from semantic_vad hints

    @property
    def on(self) -> bool:
        return self.detector is not None

    def feed(self, pcm: bytes) -> list[SpeechStarted | SpeechStopped]:
        """The detector's events for `pcm`, on the session's clock."""
        events, self._hinted = self._hinted + self.detector.feed(pcm), []
        offset = self.offset_ms
        return [
            SpeechStarted(e.audio_start_ms + offset, e.speech_start_ms + offset)
            if isinstance(e, SpeechStarted)
            else SpeechStopped(e.audio_end_ms + offset, e.speech_end_ms + offset)
            for e in events
        ]

    def speech_started(self) -> None:
        self.item_id = new_id("item")
        self.idle_since = None

    def begin(self, turn: UserTurn, call: MeteredCall) -> None:
        self.turn, self.call = turn, call

    def end(self) -> tuple[UserTurn | None, MeteredCall | None]:
        """The turn being spoken (none if it was refused or never began), now done."""
        turn, call = self.turn, self.call
        self.turn = self.call = None
        return turn, call

    def _pause_start_ms(self) -> int | None:
        """Where the pause the speaker is in began, if they are in one long enough to cut."""
        detector = self.detector
        if not detector.speaking or detector.silence_ms < PAUSE_CUT_MS:
            return None
        return self.offset_ms + detector.pause_start_ms

    def cut_at_pause(self, buffer: AudioBuffer) -> asyncio.Task | None:
        """At a pause within the turn, start transcribing what was said since the last cut
        (the piece's task, if one was cut)."""
        turn, pause_start_ms = self.turn, self._pause_start_ms()
        if pause_start_ms is None:
            return None
        cut_ms = pause_start_ms + PAUSE_CUT_MS
        if cut_ms <= turn.cut_ms or not turn.worth_cutting(pause_start_ms):
            return None
        turn.cut(buffer.audio_between(turn.cut_ms, cut_ms), cut_ms)
        if self.settings.type == "semantic_vad":
            turn.pieces[-1].add_done_callback(lambda _: self._hint(turn))
        return turn.pieces[-1]

    def silent_since_cut(self) -> bool:
        """Whether the speaker has said nothing since the turn's last cut (made in this
        pause): what is heard so far may be the whole turn."""
        pause_start_ms = self._pause_start_ms()
        return (
            self.turn is not None
            and pause_start_ms is not None
            and pause_start_ms + PAUSE_CUT_MS == self.turn.cut_ms
        )

    def _hint(self, turn: UserTurn) -> None:
        """semantic_vad reads how the words so far end (a finished sentence or not)."""
        if turn is not self.turn:
            return
        texts = [
            p.result() for p in turn.pieces if p.done() and not p.cancelled() and not p.exception()
        ]
        # A finished sentence may end the turn at once: told with the next audio fed.
        self._hinted += self.detector.hint_transcript(" ".join(texts))

    def idle_expired(self, clock_ms: int, responding: bool) -> bool:
        timeout = self.settings.idle_timeout_ms
        return bool(
            timeout
            and self.idle_since is not None
            and not responding
            and self.turn is None
            and clock_ms - self.idle_since >= timeout
        )
