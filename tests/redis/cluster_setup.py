"""A real Redis Cluster on loopback: three primaries, each with one replica.

``cluster-node-timeout 1000`` (production: 15000): a dead primary is replaced in about two
seconds. Each node keeps its identity (``nodes.conf``) in its own folder, so a killed node that is
started again rejoins as a replica of whoever took its slots.
"""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.redis.servers import Node, Topology, binaries, free_ports, server_argv, wait_until


@dataclass
class ClusterSetup(Topology):
    cli: str = ""

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3]) + "/"

    def node(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def _any(self) -> Node:
        return next(n for n in self.nodes if n.alive and not n.stopped)

    def topology(self) -> list[dict[str, str]]:
        """CLUSTER NODES as seen by a live node."""
        with self._any().client(decode_responses=True) as c:
            text = c.execute_command("CLUSTER", "NODES")
        if isinstance(text, dict):  # some redis-py versions parse it
            return [{"port": k.split(":")[1].split("@")[0], **{kk: str(vv) for kk, vv in v.items()}}
                    for k, v in text.items()]
        rows = []
        for line in text.splitlines():
            node_id, address, flags, master, *_rest = line.split()
            rows.append({"id": node_id, "port": address.split("@")[0].split(":")[1], "flags": flags,
                         "master": master, "link": line.split()[7]})
        return rows

    def primary_for(self, key: str) -> Node:
        with self._any().client() as c:
            slot = int(c.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return self.node(int(primary[1]))
        raise LookupError(key)

    def primaries(self) -> list[Node]:
        return [self.node(int(r["port"])) for r in self.topology() if "master" in r["flags"]
                and "fail" not in r["flags"]]

    def replica_of(self, primary: Node) -> Node:
        rows = self.topology()
        primary_id = next(r["id"] for r in rows if int(r["port"]) == primary.port)
        return next(self.node(int(r["port"])) for r in rows if r["master"] == primary_id)

    def healthy(self) -> bool:
        try:
            if not all(n.alive and not n.stopped for n in self.nodes):
                return False
            for node in self.nodes:
                with node.client(decode_responses=True) as c:
                    info = c.execute_command("CLUSTER", "INFO")
                    text = info if isinstance(info, str) else "\n".join(f"{k}:{v}" for k, v in info.items())
                    if "cluster_state:ok" not in text or "cluster_known_nodes:6" not in text:
                        return False
                    replication = c.info("replication")
                    if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                        return False
            rows = self.topology()
            masters = [r for r in rows if "master" in r["flags"]]
            if len(masters) != 3 or any("fail" in r["flags"] for r in rows):
                return False
            if sorted(r["master"] for r in rows if "slave" in r["flags"]) != sorted(r["id"] for r in masters):
                return False
            with self._any().client() as c:  # replicas appear in CLUSTER SLOTS once they have an offset
                return all(len(entry) >= 4 for entry in c.execute_command("CLUSTER", "SLOTS"))
        except (redis.RedisError, StopIteration, KeyError, ValueError, IndexError):
            return False

    def wait_healthy(self, timeout: float = 30.0) -> float:
        for node in self.nodes:
            if not node.alive:
                node.start()
        return wait_until(self.healthy, timeout, "the Cluster is healthy", interval=0.1)

    def failover(self, primary: Node) -> Node:
        """A planned failover (CLUSTER FAILOVER on the primary's replica); returns the promoted node."""
        replica = self.replica_of(primary)
        with replica.client() as c:
            c.execute_command("CLUSTER", "FAILOVER")
        return replica

    def stop(self) -> None:
        for node in self.nodes:
            if node.stopped:
                node.signal(signal.SIGCONT)
        super().stop()


def start_cluster(flavor: str, root: Path) -> ClusterSetup:
    server, cli, _ = binaries(flavor)
    setup = ClusterSetup(flavor, root, cli=cli)
    for port in free_ports(6, bus=True):
        setup.nodes.append(Node(port, root / str(port), server_argv(
            server, port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "1000")))
    try:
        for node in setup.nodes:
            node.start()
        for node in setup.nodes:
            wait_until(node.answers, 10, f"cluster node {node.port}")
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in setup.nodes),  # noqa: S603
                        "--cluster-replicas", "1", "--cluster-yes"],
                       check=True, capture_output=True, timeout=30)
        setup.wait_healthy(30.0)
    except BaseException:
        setup.stop()
        raise
    return setup
