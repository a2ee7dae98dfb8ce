"""The policy's ``audit`` section: where the records go, and where the checkpoints of their chains go."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from gateway.config.types import Duration, Strict


class StdoutSink(Strict):
    """One JSON line per record on stdout, for the platform's log collector (the default)."""

    kind: Literal["stdout"]


class FileSink(Strict):
    """An append-only file, reopened on SIGHUP (logrotate); several workers may share it."""

    kind: Literal["file"]
    path: Path


class RedisStreamSink(Strict):
    """A Redis stream (XADD, trimmed to about ``maxlen`` entries), on GATEWAY_REDIS_URL."""

    kind: Literal["redis_stream"]
    stream: str = "gateway:audit"
    maxlen: int = Field(1_000_000, ge=1)


Sink = Annotated[StdoutSink | FileSink | RedisStreamSink, Field(discriminator="kind")]


def _stdout() -> StdoutSink | FileSink | RedisStreamSink:
    return StdoutSink(kind="stdout")


class Checkpoints(Strict):
    """Copies of each chain's head (its seq and hash), so that records cut off the end of a chain, or a
    chain re-sealed from some point on, show. Written on reopen (SIGHUP), at shutdown, and every
    ``every`` records or ``interval`` seconds. ``sinks`` is where: put them where whoever can rewrite
    the audit file cannot. Unset, each audit file gets its own next to it (``audit.jsonl`` ->
    ``audit.checkpoints.jsonl``); ``[]`` writes none."""

    every: int = Field(10_000, ge=1)
    interval: Duration = Field(60.0, ge=1, le=86_400)
    sinks: list[Sink] | None = None


class AuditConfig(Strict):
    """``audit``: the sinks (every record goes to each), fail-closed mode, and the checkpoints."""

    sinks: list[Sink] = Field(default_factory=lambda: [_stdout()], min_length=1)
    fail_closed: bool = False
    checkpoints: Checkpoints = Field(default_factory=Checkpoints)

    @model_validator(mode="after")
    def _checkpoints_apart(self) -> AuditConfig:
        # A checkpoint written where the records are anchors nothing: it goes where they go.
        taken = {_where(sink) for sink in self.sinks}
        clashes = [_where(sink) for sink in self.checkpoints.sinks or [] if _where(sink) in taken]
        if clashes:
            raise ValueError("checkpoints.sinks must not be an audit sink too: " + ", ".join(clashes))
        return self


def _where(sink: StdoutSink | FileSink | RedisStreamSink) -> str:
    match sink:
        case FileSink():
            return f"file {sink.path}"
        case RedisStreamSink():
            return f"redis_stream {sink.stream}"
    return "stdout"
