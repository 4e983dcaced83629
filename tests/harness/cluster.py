"""A throwaway 3-node RabbitMQ cluster on loopback for tests: each node with its own name, directory,
AMQP and distribution ports, all with one Erlang cookie; the second and third join the first with
`rabbitmqctl join_cluster`. Gone after stop()."""

from __future__ import annotations

import json
import secrets
import threading
from pathlib import Path

from tests.harness.rabbitmq import RabbitMQServer, available  # noqa: F401  (available: for the fixture)


class ClusterNode(RabbitMQServer):
    """A node whose cookie and name the cluster chooses."""

    def __init__(self, cookie: str, name: str, timeout: float) -> None:
        super().__init__(timeout)
        self._cookie, self._name = cookie, name

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
        self.nodes = [ClusterNode(cookie, f"flow45c{i}-{tag}@localhost", timeout) for i in range(size)]

    def start(self) -> RabbitMQCluster:
        try:
            self._each(lambda node: node.start())  # the Erlang VMs boot side by side
            joining = self.nodes[1:]
            self._each(lambda node: node.ctl("stop_app"), joining)
            for node in joining:  # one at a time: each changes the cluster's membership
                node.ctl("join_cluster", self.nodes[0].nodename)
            self._each(lambda node: node.ctl("start_app"), joining)  # returns once the app is up
            running = json.loads(self.nodes[0].ctl("cluster_status", "--formatter", "json").stdout)["running_nodes"]
            missing = [n.nodename for n in self.nodes if n.nodename not in running]
            if missing:
                raise RuntimeError(f"nodes not in the cluster after join_cluster: {missing}\n{running}")
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
