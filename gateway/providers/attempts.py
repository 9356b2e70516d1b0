"""Every try a request made to reach a provider, so the usage record can show them.

A request's `gateway.lifecycle.MeteredCall` starts one `AttemptLog` and makes it current
(a contextvar); upstream retries, fallbacks and cooldown skips append to whatever log is
current. Routers never see it: the call reads it when it writes the ledger row.
"""

import contextvars
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Attempt:
    provider: str  # "upstream:NAME" or a local provider key such as "whisper"
    outcome: str  # "ok", an HTTP status, "connect_error", "timeout", "cooling_down" …


@dataclass
class AttemptLog:
    attempts: list[Attempt] = field(default_factory=list)
    team_id: int | None = None  # whose request: upstreams use the team's own key if it has one

    def add(self, provider: str, outcome: str) -> None:
        self.attempts.append(Attempt(provider, outcome))

    @property
    def count(self) -> int:
        return len(self.attempts)

    @property
    def final_provider(self) -> str:
        return self.attempts[-1].provider if self.attempts else ""


_current: contextvars.ContextVar[AttemptLog | None] = contextvars.ContextVar(
    "arouter_attempt_log", default=None
)


def start_attempt_log(team_id: int | None = None) -> AttemptLog:
    """A fresh log for this request, current from now on in this task."""
    log = AttemptLog(team_id=team_id)
    _current.set(log)
    return log


def current_attempt_log() -> AttemptLog:
    """The request's log, or a throwaway one when no request started a log."""
    log = _current.get()
    return log if log is not None else AttemptLog()
