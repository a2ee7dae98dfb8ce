"""Access reports: who read what from each dataset, and what was refused and why, from the audit log.

The records stream through :meth:`Report.add` one at a time, and the state kept is bounded whatever
the log's size: per dataset a few counters, one row per day, one per refusal reason, and the
principals, objects and user agents seen first, up to a budget shared by all datasets. Beyond the
budget a dataset still counts every request and byte, under "others", so totals stay exact; only
the breakdown is cut. Datasets named in refusals for an unknown dataset (free text a caller chose)
are one row, so that made-up names cannot crowd the real datasets out of the budget.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field
from typing import Any

from gateway.audit.anchor import when
from gateway.audit.verify import VerifyResult

READ_ACTIONS = frozenset({"redirect", "sign", "fetch", "proxy", "sign_batch"})  # a URL or the bytes went out
NO_DATASET, UNKNOWN_DATASETS, OTHER_DATASETS = "(no dataset)", "(unknown datasets)", "(other datasets)"


@dataclass(frozen=True)
class Budget:
    datasets: int = 1_000
    principals: int = 10_000  # shared by all datasets
    objects: int = 20_000
    agents: int = 2_000
    shown: int = 100  # rows per table in the output


@dataclass(frozen=True)
class Filters:
    since: float | None = None  # inclusive
    until: float | None = None  # exclusive
    datasets: frozenset[str] = frozenset()
    principal: str | None = None

    def wants(self, when_: float, dataset: str | None, principal: dict[str, Any]) -> bool:
        if self.since is not None and when_ < self.since:
            return False
        if self.until is not None and when_ >= self.until:
            return False
        if self.datasets and dataset not in self.datasets:
            return False
        if self.principal is not None:
            wanted = self.principal
            email = principal.get("email")
            return (wanted in (principal.get("subject"), principal.get("key_id"), principal_label(principal))
                    or (isinstance(email, str) and email.casefold() == wanted.casefold()))
        return True


def principal_label(principal: dict[str, Any]) -> str:
    method = str(principal.get("method") or "anonymous")
    subject, email = principal.get("subject"), principal.get("email")
    if not subject and not email:
        return method
    return f"{subject or email}" + (f" <{email}>" if email and subject else "") + f" [{method}]"


@dataclass(slots=True)
class Tally:
    requests: int = 0
    allowed: int = 0
    denied: int = 0
    reads: int = 0
    bytes: int = 0
    first: float = float("inf")
    last: float = float("-inf")

    def add(self, at: float, allowed: bool, reads: int, sent: int) -> None:
        self.requests += 1
        if allowed:
            self.allowed += 1
        else:
            self.denied += 1
        self.reads += reads
        self.bytes += sent
        if at < self.first:
            self.first = at
        if at > self.last:
            self.last = at

    def row(self) -> dict[str, Any]:
        return {"requests": self.requests, "allowed": self.allowed, "denied": self.denied, "reads": self.reads,
                "bytes": self.bytes, "first_seen": when(self.first) if self.requests else None,
                "last_seen": when(self.last) if self.requests else None}


@dataclass
class DatasetReport:
    name: str
    total: Tally = field(default_factory=Tally)
    principals: dict[str, Tally] = field(default_factory=dict)
    other_principals: Tally = field(default_factory=Tally)
    objects: dict[str, list[int]] = field(default_factory=dict)  # key: [reads, bytes]
    other_objects: list[int] = field(default_factory=lambda: [0, 0])
    days: dict[int, list[int]] = field(default_factory=dict)  # days since 1970-01-01 (UTC): [allowed, denied]
    refusals: dict[str, int] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)
    agents: dict[str, int] = field(default_factory=dict)
    other_agents: int = 0


class Report:
    """Aggregates records (already verified by the caller, in the same pass) for :meth:`summary`."""

    def __init__(self, filters: Filters | None = None, budget: Budget | None = None) -> None:
        self.filters = filters or Filters()
        self.budget = budget or Budget()
        self.datasets: dict[str, DatasetReport] = {}
        self.read = 0
        self.matched = 0
        self.checkpoints = 0
        self._principals = self._objects = self._agents = 0
        self._labels: dict[tuple[object, object, object], str] = {}
        self._everything = self.filters == Filters()

    def add(self, record: dict[str, Any]) -> None:
        self.read += 1
        if "type" in record:  # a checkpoint, not a decision
            self.checkpoints += 1
            return
        at, dataset, principal = record.get("time"), record.get("dataset"), record.get("principal")
        at = float(at) if isinstance(at, int | float) else 0.0
        principal = principal if isinstance(principal, dict) else {}
        if not self._everything and not self.filters.wants(at, dataset if isinstance(dataset, str) else None,
                                                             principal):
            return
        self.matched += 1
        allowed = record.get("decision") == "allow"
        reason = record.get("reason")
        ds = self._dataset(dataset, reason)
        action = str(record.get("action"))
        keys = self._keys(record, action) if allowed else []
        sent = record.get("bytes")
        sent = sent if type(sent) is int and sent > 0 else 0
        ds.total.add(at, allowed, len(keys), sent)
        who = (principal.get("method"), principal.get("subject"), principal.get("email"))
        label = self._labels.get(who)
        if label is None:
            if len(self._labels) >= 4 * self.budget.principals:
                self._labels.clear()  # a cache: bounded like everything else
            label = self._labels[who] = principal_label(principal)
        tally = ds.principals.get(label)
        if tally is None:
            if self._principals < self.budget.principals:
                self._principals += 1
                tally = ds.principals[label] = Tally()
            else:
                tally = ds.other_principals
        tally.add(at, allowed, len(keys), sent)
        for key in keys:
            counts = ds.objects.get(key)
            if counts is None and self._objects < self.budget.objects:
                self._objects += 1
                counts = ds.objects[key] = [0, 0]
            counts = counts if counts is not None else ds.other_objects
            counts[0] += 1
            counts[1] += sent if len(keys) == 1 else 0
        day = ds.days.setdefault(int(at // 86_400), [0, 0])
        day[0 if allowed else 1] += 1
        if not allowed:
            text = str(reason) if reason else "(none)"
            if text in ds.refusals or len(ds.refusals) < 100:
                ds.refusals[text] = ds.refusals.get(text, 0) + 1
        if action in ds.actions or len(ds.actions) < 50:
            ds.actions[action] = ds.actions.get(action, 0) + 1
        agent = str(record.get("user_agent") or "")
        if agent in ds.agents:
            ds.agents[agent] += 1
        elif self._agents < self.budget.agents:
            self._agents += 1
            ds.agents[agent] = 1
        else:
            ds.other_agents += 1

    def _dataset(self, dataset: object, reason: object) -> DatasetReport:
        if reason == "unknown_dataset":
            name = UNKNOWN_DATASETS
        elif not isinstance(dataset, str) or not dataset:
            name = NO_DATASET
        else:
            name = dataset
        ds = self.datasets.get(name)
        if ds is None:
            if len(self.datasets) >= self.budget.datasets:
                name = OTHER_DATASETS
                ds = self.datasets.get(name)
            if ds is None:
                ds = self.datasets[name] = DatasetReport(name)
        return ds

    @staticmethod
    def _keys(record: dict[str, Any], action: str) -> list[str]:
        if action not in READ_ACTIONS:
            return []
        keys = record.get("keys")
        if isinstance(keys, list):
            return [key for key in keys if isinstance(key, str)]
        key = record.get("key")
        return [key] if isinstance(key, str) else []

    def summary(self, chain: VerifyResult, sources: list[str]) -> dict[str, Any]:
        """Everything the output formats show, as plain JSON values; the chain comes first."""
        shown = self.budget.shown
        datasets = []
        for ds in sorted(self.datasets.values(), key=lambda d: (-d.total.requests, d.name)):
            principals = sorted(ds.principals.items(), key=lambda item: (-item[1].requests, item[0]))
            objects = sorted(ds.objects.items(), key=lambda item: (-item[1][0], item[0]))
            agents = sorted(ds.agents.items(), key=lambda item: (-item[1], item[0]))
            datasets.append({
                "dataset": ds.name, **ds.total.row(),
                "objects": len(ds.objects), "objects_complete": ds.other_objects[0] == 0,
                "principals": [{"principal": label, **tally.row()} for label, tally in principals[:shown]],
                "principals_not_shown": {"principals": max(0, len(principals) - shown),
                                         **ds.other_principals.row()},
                "top_objects": [{"key": key, "reads": c[0], "bytes": c[1]} for key, c in objects[:shown]],
                "objects_not_tracked": {"reads": ds.other_objects[0], "bytes": ds.other_objects[1]},
                "days": [{"day": _day(day), "allowed": c[0], "denied": c[1]} for day, c in sorted(ds.days.items())],
                "refusals": [{"reason": r, "count": n} for r, n in sorted(ds.refusals.items(), key=lambda i: -i[1])],
                "actions": dict(sorted(ds.actions.items())),
                "user_agents": [{"user_agent": a, "requests": n} for a, n in agents[:shown]],
            })
        filters = self.filters
        return {
            "chain": {"ok": chain.ok, "records": chain.records, "chains": chain.chains,
                      "problems": [str(p) for p in chain.problems], "problem_count": chain.problem_count,
                      "notes": list(chain.notes), "checkpoints_matched": chain.checkpoints_matched},
            "sources": sources,
            "period": {"since": when(filters.since) if filters.since is not None else None,
                       "until": when(filters.until) if filters.until is not None else None},
            "filters": {"datasets": sorted(filters.datasets), "principal": filters.principal},
            "records": {"read": self.read, "in_report": self.matched, "checkpoints": self.checkpoints},
            "generated": when(_time.time()),
            "datasets": datasets,
        }


def _day(day: int) -> str:
    return _time.strftime("%Y-%m-%d", _time.gmtime(day * 86_400))
