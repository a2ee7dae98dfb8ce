"""A real Sentinel setup on loopback: one master, one replica, three sentinels (quorum 2).

``down-after-milliseconds 1000`` and ``failover-timeout 5000`` (production uses 30 s and 3 min):
a dead master is replaced in about two seconds. Each sentinel has a writable config file of its
own, since Sentinel rewrites it.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.redis.servers import Node, Topology, binaries, free_ports, server_argv, wait_until

MASTER_NAME = "gwmaster"


@dataclass
class SentinelSetup(Topology):
    """nodes = [data node A, data node B, sentinel 1, sentinel 2, sentinel 3]."""

    @property
    def data(self) -> list[Node]:
        return self.nodes[:2]

    @property
    def sentinels(self) -> list[Node]:
        return self.nodes[2:]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        return self.sentinels[index].client(decode_responses=True)

    def master_port(self) -> int:
        """The master as a live sentinel reports it."""
        for sentinel in self.sentinels:
            if not sentinel.alive or sentinel.stopped:
                continue
            try:
                with sentinel.client(decode_responses=True) as c:
                    _, port = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
                    return int(port)
            except redis.RedisError:
                continue
        raise RuntimeError("no sentinel answers")

    def master(self) -> Node:
        port = self.master_port()
        return next(n for n in self.data if n.port == port)

    def replica(self) -> Node:
        port = self.master_port()
        return next(n for n in self.data if n.port != port)

    def healthy(self) -> bool:
        """Both data nodes up, the replica linked and in sync, every sentinel agreeing on it all."""
        try:
            master = self.master()
            replica = self.replica()
            with replica.client(decode_responses=True) as c:
                info = c.info("replication")
                if info.get("role") != "slave" or info.get("master_link_status") != "up" or \
                        int(info.get("master_port", 0)) != master.port:
                    return False
            for sentinel in self.sentinels:
                with sentinel.client(decode_responses=True) as c:
                    state = c.sentinel_master(MASTER_NAME)
                    if int(state["port"]) != master.port or state["num-slaves"] != 1 or \
                            state["num-other-sentinels"] != 2 or state["is_sdown"] or state["is_odown"]:
                        return False
                    for entry in c.sentinel_slaves(MASTER_NAME):
                        if entry["is_sdown"] or entry["is_disconnected"] or int(entry["port"]) != replica.port:
                            return False
        except (redis.RedisError, RuntimeError, StopIteration, KeyError, ValueError):
            return False
        return True

    def wait_healthy(self, timeout: float = 30.0) -> float:
        started = time.monotonic()
        for node in self.data:
            if not node.alive:
                self.restart_as_replica(node, timeout)
        return wait_until(self.healthy, timeout - (time.monotonic() - started), "the Sentinel setup is healthy",
                          interval=0.1)

    def agreed_master(self) -> int | None:
        """The master's port when every live sentinel names the same one, else None."""
        ports = set()
        for sentinel in self.sentinels:
            if sentinel.alive and not sentinel.stopped:
                try:
                    with sentinel.client(decode_responses=True) as c:
                        ports.add(int(c.sentinel_get_master_addr_by_name(MASTER_NAME)[1]))
                except redis.RedisError:
                    return None
        return ports.pop() if len(ports) == 1 else None

    def restart_as_replica(self, node: Node, timeout: float = 15.0) -> None:
        """Bring a dead data node back as a replica of the master every sentinel agrees on, as Redis
        operators do. Started empty as a master instead (no persistence), it could win back its old
        role in a sentinel that has not heard of the failover yet and wipe the data of the new master."""
        wait_until(lambda: self.agreed_master() not in (None, node.port), timeout, "sentinels agree on a master")
        node.start("--replicaof", "127.0.0.1", str(self.agreed_master()))

    def failover(self) -> None:
        """A planned failover (SENTINEL FAILOVER); the old master stays up."""
        with self.sentinel_client() as c:
            c.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)

    def kill_master(self) -> Node:
        master = self.master()
        master.kill()
        return master

    def stop_master(self) -> Node:
        master = self.master()
        master.signal(signal.SIGSTOP)
        return master


def start_sentinel(flavor: str, root: Path) -> SentinelSetup:
    server, _, sentinel_bin = binaries(flavor)
    master_port, replica_port, *sentinel_ports = free_ports(5)
    setup = SentinelSetup(flavor, root)
    setup.nodes.append(Node(master_port, root / "a", server_argv(server, master_port)))
    setup.nodes.append(Node(replica_port, root / "b", server_argv(
        server, replica_port, "--replicaof", "127.0.0.1", str(master_port))))
    for port in sentinel_ports:
        directory = root / f"s{port}"
        directory.mkdir(parents=True)
        conf = directory / "sentinel.conf"
        conf.write_text(f"""port {port}
bind 127.0.0.1
daemonize no
dir {directory}
sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2
sentinel down-after-milliseconds {MASTER_NAME} 1000
sentinel failover-timeout {MASTER_NAME} 5000
sentinel parallel-syncs {MASTER_NAME} 1
""")
        setup.nodes.append(Node(port, directory, [sentinel_bin, str(conf)]))
    started = time.monotonic()
    try:
        for node in setup.data:
            node.start()
        # Sentinels learn replicas from the master's INFO, every 10 s: start them once the replica is
        # linked, so that their first INFO already lists it.
        wait_until(lambda: _linked(setup.data[1]), 10, "the replica is linked")
        for node in setup.sentinels:
            node.start()
        setup.wait_healthy(30.0 - (time.monotonic() - started))
    except BaseException:
        setup.stop()
        raise
    return setup


def _linked(replica: Node) -> bool:
    try:
        with replica.client(decode_responses=True) as c:
            return c.info("replication").get("master_link_status") == "up"
    except redis.RedisError:
        return False
