"""Processes the harness starts: free ports, readiness, the worker tree, RSS and CPU, stopping by PID.

Every server runs in its own session (``start_new_session``), so its process group id is its PID and
stopping it means signalling that one group: the server and every worker it forked, never anything
else on the machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
TICKS = os.sysconf("SC_CLK_TCK")


STARTED: list[int] = []  # every server and worker PID this run started, for the report and the tests


class BenchError(RuntimeError):
    """A problem that stops the run, with a message meant for the person running it."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


# -- /proc ---------------------------------------------------------------------------------------
def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    return raw[raw.rindex(")") + 2:].split()


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (scanning /proc: needs no CONFIG_PROC_CHILDREN)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(_stat_fields(int(entry))[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return _stat_fields(pid)[0] != "Z"
    except (OSError, IndexError):
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def status_kb(pid: int, field_name: str) -> int | None:
    """A ``kB`` field of /proc/PID/status, e.g. VmHWM (peak RSS) or VmRSS."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of one process."""
    try:
        fields = _stat_fields(pid)
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, ValueError, IndexError):
        return None


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs). False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _listen_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(parts[9])
    return inodes


def polls_listener(pid: int, port: int) -> bool:
    """True when the process has the listening socket of ``port`` in one of its epoll sets, i.e. its
    event loop is running and it accepts connections. A worker still importing does not, and a
    benchmark started before every worker polls would hand all connections to the first one."""
    inodes = _listen_inodes(port)
    fds = set()
    epolls = []
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    fds.add(fd)
                elif target == "anon_inode:[eventpoll]":
                    epolls.append(fd)
    for fd in epolls:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
                if line.startswith("tfd:") and line.split()[1] in fds:
                    return True
    return False


# -- servers -------------------------------------------------------------------------------------
@dataclass
class Server:
    """A server process tree started by the harness."""

    name: str
    argv: Sequence[str]
    port: int
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    is_worker: Callable[[int], bool] = lambda pid: True
    workers: int = 2
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    startup_s: float | None = field(default=None, init=False)

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                list(self.argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=dict(self.env) if self.env is not None else None, cwd=self.cwd, start_new_session=True,
            )
        STARTED.append(self.process.pid)
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited with code {self.process.returncode} while starting; "
                                 f"its log ({self.log_path}) ends with:\n{self.log_tail()}")
            pids = self.worker_pids()
            if len(pids) >= self.workers and all(polls_listener(pid, self.port) for pid in pids):
                self.startup_s = round(time.monotonic() - started, 2)
                STARTED.extend(p for p in pids if p != self.process.pid)
                return
            time.sleep(0.05)
        raise BenchError(f"{self.name} did not get {self.workers} workers accepting on 127.0.0.1:{self.port} "
                         f"within {timeout:.0f}s; its log ends with:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        if self.workers == 1 and self.is_worker(self.pid):
            return [self.pid]
        return [pid for pid in children(self.pid) if self.is_worker(pid)]

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL it if still there after 10 s."""
        if self.process is None:
            return
        pgid = self.process.pid  # its own session: the group id is its PID
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass
        # Workers may outlive the parent briefly; make sure the whole group is gone.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self.process = None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


@contextlib.contextmanager
def running(server: Server, timeout: float = 60.0) -> Iterator[Server]:
    try:
        server.start(timeout)
        yield server
    finally:
        server.stop()


# -- system tools --------------------------------------------------------------------------------
def ensure_tool(binary: str, package: str, *, install: bool = True) -> str | None:
    """Path of ``binary``; installs the Debian ``package`` when missing, running as root with apt-get.
    Returns None when it is missing and cannot be installed."""
    found = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.access(p, os.X_OK)), None)
    if found or not install:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    print(f"bench: installing {package} with apt-get", flush=True)
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=False)
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=False)
    return shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.access(p, os.X_OK)), None)
