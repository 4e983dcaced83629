"""A throwaway 3-node RabbitMQ cluster on loopback for tests: each node with its own name, directory,
AMQP, distribution and HTTP ports, all with one Erlang cookie; the second and third join the first
at their first boot (peer discovery from a fixed list). Gone after stop()."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

from tests.harness.rabbitmq import RabbitMQServer, available  # noqa: F401  (available: for the fixture)


class ClusterNode(RabbitMQServer):
    """A node whose cookie and name the cluster chooses; with `seed`, it joins that node's cluster
    when it first boots. Each has the management API (`http()`, `apply()`, `queues()`)."""

    def __init__(self, cookie: str, name: str, timeout: float, seed: str | None) -> None:
        super().__init__(timeout, management=True)
        self._cookie, self._name, self._seed = cookie, name, seed

    def _extra_config(self) -> str:
        if self._seed is None:
            return ""
        # Read on a blank node's first boot only: started again later, a node rejoins its cluster by itself.
        return ("cluster_formation.peer_discovery_backend = classic_config\n"
                f"cluster_formation.classic_config.nodes.1 = {self._seed}\n")

    def _launch(self) -> None:
        cookie = Path(self.dir) / ".erlang.cookie"
        if self.nodename != self._name:  # first start (its own name and cookie just written): the cluster's
            self.nodename = self._name
            cookie.chmod(0o600)
            cookie.write_text(self._cookie)
            cookie.chmod(0o400)
        super()._launch()


class RabbitMQCluster:
    """Three nodes in one cluster. `nodes[i].amqp_url` reaches each; `nodes[i].kill()` and
    `start_again()` as for one node (a node started again rejoins the cluster by itself)."""

    def __init__(self, size: int = 3, timeout: float = 120.0) -> None:
        cookie = secrets.token_hex(16).upper()
        tag = secrets.token_hex(3)
        names = [f"flow45c{i}-{tag}@localhost" for i in range(size)]
        self.nodes = [ClusterNode(cookie, name, timeout, seed=None if i == 0 else names[0])
                      for i, name in enumerate(names)]

    def start(self) -> RabbitMQCluster:
        try:
            first, *joining = self.nodes
            first.start()
            # Side by side: they join the first as they boot (no rabbitmqctl stop_app, join_cluster, start_app).
            self._each(lambda node: node.start(), joining)
            running = [n["name"] for n in first.http("GET", "/api/nodes?columns=name,running") if n["running"]]
            missing = [n.nodename for n in self.nodes if n.nodename not in running]
            if missing:
                raise RuntimeError(f"nodes not in the cluster after their first boot: {missing}\n{running}\n"
                                   + "\n".join(node._log_tail() for node in self.nodes if node.dir))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._each(lambda node: node.stop())

    def _each(self, action, nodes: list[ClusterNode] | None = None) -> None:
        errors: list[BaseException] = []

        def run(node: ClusterNode) -> None:
            try:
                action(node)
            except BaseException as exc:  # noqa: BLE001 - raised below, after the others finished
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(node,)) for node in (self.nodes if nodes is None else nodes)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def __enter__(self) -> RabbitMQCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
