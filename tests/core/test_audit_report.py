"""``gateway audit report``: the chain verified first (a break is the report's first line, and the
report is still written), the filters, the bounded breakdown, the three formats, and hostile text
(keys, user agents and subjects are chosen by callers) escaped in the HTML page."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from gateway.audit.chain import Chain, encode_record
from gateway.audit.log import AuditLog
from gateway.audit.redis_stream import RedisStreamSink
from gateway.audit.report import Budget, Filters, Report
from gateway.audit.sinks import FileSink
from gateway.audit.verify import verify_lines
from gateway.cli import main
from gateway.cli.audit import parse_time
from gateway.models import ANONYMOUS, AuditRecord, AuthMethod, Principal
from gateway.redis.client import SharedRedis
from gateway.redis.options import RedisOptions
from tests.support import RedisServer, start_redis, stop_redis

DOCS_BLOCK = "audit-report"  # the block of docs/audit.md whose commands this file runs
DAY = 86_400.0
T0 = 1_735_689_600.0  # 2025-01-01T00:00:00Z
ALICE = Principal(AuthMethod.OIDC, subject="u-alice", email="Alice@corp.example", issuer="okta")
VENDOR = Principal(AuthMethod.VENDOR_HMAC, subject="labelco", issuer="labelco", key_id="k1")
HOSTILE_KEY = '<script>alert("key")</script>'
HOSTILE_AGENT = '"><img src=x onerror=alert(1)>'
HOSTILE_SUBJECT = "</td><svg onload=alert(2)>"


def rec(i: int, at: float, dataset: str | None, key: str | None, who: Principal = ALICE, *, action: str = "redirect",
        reason: str | None = None, sent: int | None = None, agent: str = "pytest", keys: list[str] | None = None,
        ) -> AuditRecord:
    return AuditRecord(at, f"r{i}", action, dataset, key, "deny" if reason else "allow", None if reason else "lab",
                       reason, 403 if reason else 200, "10.0.0.1", agent, who, None, 1.0, keys, None, sent)


RECORDS = [
    rec(0, T0 + 10, "vision", "a.png"),
    rec(1, T0 + 20, "vision", "a.png", action="proxy", sent=1000),
    rec(2, T0 + DAY + 5, "vision", "b.png", VENDOR, action="proxy", sent=250),
    rec(3, T0 + DAY + 6, "vision", "c.png", VENDOR, reason="key_not_allowed"),
    rec(4, T0 + 2 * DAY, "vision", None, action="sign_batch", keys=["d.png", "e.png"]),
    rec(5, T0 + 2 * DAY + 1, "text", "doc.txt", ANONYMOUS, reason="no_rule_matched"),
    rec(6, T0 + 2 * DAY + 2, "made-up-<name>", "x", ANONYMOUS, reason="unknown_dataset"),
    rec(7, T0 + 3 * DAY, "text", HOSTILE_KEY, Principal(AuthMethod.OIDC, subject=HOSTILE_SUBJECT), agent=HOSTILE_AGENT),
    rec(8, T0 + 3 * DAY + 1, "text", "=cmd|' /C calc'!A0"),
]


def write_log(path: Path, records: list[AuditRecord] = RECORDS) -> Path:
    log = AuditLog([FileSink(path)])
    for record in records[:-1]:
        log.emit(record)
    asyncio.run(log.emit_confirmed(records[-1]))
    log.close()
    return path


@pytest.fixture
def audit(tmp_path: Path) -> Path:
    return write_log(tmp_path / "audit.jsonl")


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["audit", "report", *args])
    out, err = capsys.readouterr()
    return code, out, err


def as_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code, out, _ = report(capsys, "--format", "json", *args)
    data = orjson.loads(out)
    assert isinstance(data, dict)
    assert code == (0 if data["chain"]["ok"] else 1)
    return data


def dataset(data: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [d for d in data["datasets"] if d["dataset"] == name]
    assert len(found) == 1, name
    return found[0]


# -- the chain first ---------------------------------------------------------------------------------

def test_an_intact_chain_heads_every_format(audit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, html, err = report(capsys, str(audit))
    assert code == 0 and "chain intact" in err
    body = html.split("<body>", 1)[1].lstrip()
    assert body.startswith('<div class="chain ok" id="chain">Chain intact: 9 records in 1 chain(s)')
    data = as_json(capsys, str(audit))
    assert next(iter(data)) == "chain" and data["chain"]["ok"] is True and data["chain"]["problems"] == []
    _, out, _ = report(capsys, "--format", "csv", str(audit))
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[1][:4] == ["chain", "", "intact", "9"]


def test_a_broken_chain_is_the_first_line_and_the_report_is_still_written(
        audit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = audit.read_bytes().splitlines(keepends=True)
    lines[4] = lines[4].replace(b'"status":200', b'"status":204')
    audit.write_bytes(b"".join(lines))
    code, html, err = report(capsys, str(audit))
    assert code == 1 and f"CHAIN BROKEN: {audit}:5: " in err
    body = html.split("<body>", 1)[1].lstrip()
    first = body.split("</div>", 1)[0]
    assert first.startswith('<div class="chain bad" id="chain">Chain broken: 1 problem(s)')
    assert f"{audit}:5: chain " in first and "the record was changed" in first
    data = as_json(capsys, str(audit))
    assert data["chain"]["problems"][0].startswith(f"{audit}:5: ")
    assert data["records"] == {"read": 9, "in_report": 9, "checkpoints": 0}  # still counted, the changed one too
    _, out, _ = report(capsys, "--format", "csv", str(audit))
    chain_row = list(csv.reader(io.StringIO(out)))[1]
    assert chain_row[:3] == ["chain", "", "broken"] and chain_row[-1].startswith(f"{audit}:5: ")


# -- what it counts ------------------------------------------------------------------------------------

def test_per_dataset_principals_objects_bytes_days_and_refusals(audit: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    data = as_json(capsys, str(audit))
    vision = dataset(data, "vision")
    assert (vision["requests"], vision["allowed"], vision["denied"], vision["bytes"]) == (5, 4, 1, 1250)
    assert (vision["objects"], vision["reads"], vision["objects_complete"]) == (4, 5, True)  # a, b, d, e
    assert {o["key"]: (o["reads"], o["bytes"]) for o in vision["top_objects"]} == {
        "a.png": (2, 1000), "b.png": (1, 250), "d.png": (1, 0), "e.png": (1, 0)}
    principals = {p["principal"]: p for p in vision["principals"]}
    assert set(principals) == {"u-alice <Alice@corp.example> [oidc]", "labelco [vendor_hmac]"}
    vendor = principals["labelco [vendor_hmac]"]
    assert (vendor["requests"], vendor["denied"], vendor["bytes"]) == (2, 1, 250)
    assert (vendor["first_seen"], vendor["last_seen"]) == ("2025-01-02T00:00:05Z", "2025-01-02T00:00:06Z")
    assert vision["days"] == [{"day": "2025-01-01", "allowed": 2, "denied": 0},
                              {"day": "2025-01-02", "allowed": 1, "denied": 1},
                              {"day": "2025-01-03", "allowed": 1, "denied": 0}]
    assert vision["refusals"] == [{"reason": "key_not_allowed", "count": 1}]
    assert (vision["first_seen"], vision["last_seen"]) == ("2025-01-01T00:00:10Z", "2025-01-03T00:00:00Z")
    # A refusal for a dataset that does not exist names whatever the caller typed: one row for all of them.
    assert dataset(data, "(unknown datasets)")["refusals"] == [{"reason": "unknown_dataset", "count": 1}]
    assert "made-up-<name>" not in {d["dataset"] for d in data["datasets"]}


def test_filters_by_time_dataset_and_principal(audit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = as_json(capsys, "--since", "2025-01-02", "--until", "2025-01-03T00:00:01Z", str(audit))
    assert data["records"]["in_report"] == 3  # r2, r3, r4: since is inclusive, until is not
    assert data["period"] == {"since": "2025-01-02T00:00:00Z", "until": "2025-01-03T00:00:01Z"}
    data = as_json(capsys, "--dataset", "text", str(audit))
    assert [d["dataset"] for d in data["datasets"]] == ["text"] and data["records"]["in_report"] == 3
    assert data["chain"]["records"] == 9  # the chain is verified whole, whatever the filters
    data = as_json(capsys, "--principal", "alice@CORP.example", str(audit))  # an email, in any case
    assert data["records"]["in_report"] == 4
    assert as_json(capsys, "--principal", "k1", str(audit))["records"]["in_report"] == 2  # a vendor's key id
    assert as_json(capsys, "--principal", "nobody", str(audit))["datasets"] == []


def test_parse_time_forms() -> None:
    assert parse_time("2025-01-01") == T0
    assert parse_time("2025-01-01T01:00:00+01:00") == T0
    assert parse_time(str(T0)) == T0
    with pytest.raises(Exception, match="give a date"):
        parse_time("last tuesday")


def test_the_breakdown_is_bounded_and_the_totals_stay_exact() -> None:
    many = [rec(i, T0 + i, "big", f"k/{i}", Principal(AuthMethod.OIDC, subject=f"s{i % 30}"), sent=10,
                action="proxy", agent=f"agent-{i}") for i in range(200)]
    built = Report(Filters(), Budget(objects=50, principals=20, agents=5, shown=10))
    for line in write_lines(many):
        built.add(orjson.loads(line))
    [big] = built.summary(verify_lines([]), [])["datasets"]
    assert (big["requests"], big["bytes"], big["reads"]) == (200, 2000, 200)
    assert (big["objects"], big["objects_complete"]) == (50, False)
    assert big["objects_not_tracked"] == {"reads": 150, "bytes": 1500}
    assert len(big["principals"]) == 10 and big["principals_not_shown"]["principals"] == 10
    assert sum(p["requests"] for p in big["principals"]) + big["principals_not_shown"]["requests"] < 200
    assert len(big["user_agents"]) == 5
    assert len(built.datasets["big"].objects) == 50 and len(built.datasets["big"].agents) == 5


def write_lines(records: list[AuditRecord]) -> list[bytes]:
    chain = Chain("test:1:x:file")
    return [chain.seal(encode_record(r)) for r in records]


# -- the formats --------------------------------------------------------------------------------------

class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)


def test_the_html_page_escapes_hostile_text_and_loads_nothing(audit: Path, capsys: pytest.CaptureFixture[str],
                                                              tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    code, stdout, _ = report(capsys, "--out", str(out), str(audit))
    assert code == 0 and stdout == ""
    page = out.read_text()
    parser = Tags()
    parser.feed(page)
    assert "script" not in parser.tags and "img" not in parser.tags
    assert set(parser.tags) <= {"html", "head", "meta", "title", "style", "body", "div", "ul", "li", "h1", "h2",
                                "h3", "p", "a", "span", "section", "table", "thead", "tbody", "tr", "th", "td", "svg",
                                "line", "text", "g", "rect"}
    assert not [name for name, _ in parser.attrs if name.startswith("on")]  # no event handler anywhere
    assert not [value for name, value in parser.attrs if name in ("src", "href") and not (value or "").startswith("#")]
    assert "&lt;script&gt;alert(&quot;key&quot;)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;/td&gt;&lt;svg onload=alert(2)&gt;" in page
    assert re.search(r"<svg [^>]*aria-label=\"requests per day\"", page)
    assert "default-src 'none'" in page


def test_csv_is_one_table_and_defuses_formulas(audit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = report(capsys, "--format", "csv", str(audit))
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["section", "dataset", "name", "requests", "allowed", "denied", "reads", "bytes",
                             "first_seen", "last_seen", "detail"]
    assert {row["section"] for row in rows} == {"chain", "chain_note", "dataset", "principal", "object", "day",
                                                "refusal", "user_agent"}
    objects = {row["name"] for row in rows if row["section"] == "object" and row["dataset"] == "text"}
    assert "'=cmd|' /C calc'!A0" in objects and HOSTILE_KEY in objects
    [vision] = [row for row in rows if row["section"] == "dataset" and row["dataset"] == "vision"]
    assert (vision["requests"], vision["bytes"], vision["first_seen"]) == ("5", "1250", "2025-01-01T00:00:10Z")


def test_json_shape(audit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = as_json(capsys, str(audit))
    assert list(data) == ["chain", "sources", "period", "filters", "records", "generated", "datasets"]
    assert set(dataset(data, "vision")) == {
        "dataset", "requests", "allowed", "denied", "reads", "bytes", "first_seen", "last_seen", "objects",
        "objects_complete", "principals", "principals_not_shown", "top_objects", "objects_not_tracked", "days",
        "refusals", "actions", "user_agents"}
    assert data["sources"] == [str(audit)]


# -- from a real Redis stream ----------------------------------------------------------------------------

# The writer's first command also connects: on a loaded machine that can outlast the 250 ms a request
# may wait, and the checkpoint would then (rightly) be skipped, not retried.
PATIENT = RedisOptions(timeout=5.0, connect_timeout=5.0)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    stop_redis(server)


def test_a_report_from_a_trimmed_redis_stream(redis_server: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    log = AuditLog([RedisStreamSink(SharedRedis(redis_server.url, options=PATIENT), "audit-s", maxlen=1000)])
    for record in RECORDS[:-1]:
        log.emit(record)
    asyncio.run(log.emit_confirmed(RECORDS[-1]))
    log.close()
    args = ["--format", "json", "--redis-url", redis_server.url, "--stream", "audit-s"]
    data = as_json(capsys, *args)
    assert data["chain"]["ok"] and data["records"]["in_report"] == 9
    assert dataset(data, "vision")["bytes"] == 1250
    client = redis.Redis.from_url(redis_server.url)
    oldest = client.xrange("audit-s", count=2) or []
    client.xdel("audit-s", *[entry_id for entry_id, _ in oldest if entry_id is not None])  # as MAXLEN does
    client.close()
    data = as_json(capsys, *args)
    assert data["chain"]["ok"] and data["records"]["in_report"] == 7
    assert any("continues chain" in note and "from seq 3" in note for note in data["chain"]["notes"])
