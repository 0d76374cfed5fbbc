"""A throwaway three-node RabbitMQ cluster on loopback, for `make cluster`.

Beside the machine's own broker (`rabbit@localhost` on 5672, which other tests use and
which this module never touches), three more nodes of the installed RabbitMQ, each with
its own node name (`registrar-cN-<run>@localhost`), AMQP and distribution ports (free
ones), config file, data and log directories under a temporary root, and an Erlang cookie
of its own (the `.erlang.cookie` in the HOME the nodes and our `rabbitmqctl` calls share).
See docs/broker-cluster.md.

Facts this relies on (RabbitMQ 3.10 from Debian):

* /etc/rabbitmq/rabbitmq.conf pins `listeners.tcp.local` to 5672, so RABBITMQ_NODE_PORT
  alone is ignored: each node gets a config file of its own (RABBITMQ_CONFIG_FILE).
* /etc/rabbitmq/rabbitmq-env.conf names the default node: each node reads an env file of
  ours instead (RABBITMQ_CONF_ENV_FILE) and gets everything from the environment.
* No plugins (RABBITMQ_ENABLED_PLUGINS_FILE holds `[].`): the management plugin's port
  would clash with the default node's.
* The server runs as the `rabbitmq` user, which must own the directories; run as root, we
  start the nodes (and rabbitmqctl) as that user.

Every node runs in a session of its own (a Ctrl-C meant for the harness does not reach
it); `stop()` ends them all — `rabbitmqctl stop`, then SIGKILL to what is left of their
process groups and of any beam process carrying our node names — and is safe to call
twice, from `finally` and from atexit.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port
from tests.faults.common import progress

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
SERVER_USER = "rabbitmq"
NODE_COUNT = 3
BOOT_TIMEOUT_S = 180
CTL_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60
GUEST = "guest:guest"


@dataclass
class Node:
    """One node: its name, ports and directory."""

    name: str
    amqp_port: int
    dist_port: int
    home: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://{GUEST}@127.0.0.1:{self.amqp_port}/"


class LocalCluster:
    """Start with `start()`, always `stop()`; `ctl(node, ...)` runs rabbitmqctl on a node."""

    def __init__(self, run_id: str, size: int = NODE_COUNT) -> None:
        self.run_id = run_id
        self.root = Path(tempfile.mkdtemp(prefix="registrar-cluster-"))
        self.nodes = [
            Node(
                name=f"registrar-c{n}-{run_id}@localhost",
                amqp_port=free_port(),
                dist_port=free_port(),
                home=self.root / f"c{n}",
            )
            for n in range(1, size + 1)
        ]
        self._as_server_user = os.geteuid() == 0
        self._stopped = False

    @property
    def url(self) -> str:
        """REGISTRAR_AMQP_URL for the cluster: every node, the first one first."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    # -- files and environment ----------------------------------------------------------

    def _write_files(self) -> None:
        (self.root / ".erlang.cookie").write_text(secrets.token_hex(20))
        (self.root / ".erlang.cookie").chmod(0o400)
        (self.root / "rabbitmq-env.conf").write_text("# all settings come from the environment\n")
        (self.root / "enabled_plugins").write_text("[].\n")
        for node in self.nodes:
            for sub in ("mnesia", "log"):
                (node.home / sub).mkdir(parents=True)
            (node.home / "rabbitmq.conf").write_text(
                f"listeners.tcp.local = 127.0.0.1:{node.amqp_port}\nloopback_users.guest = true\n"
            )
        if self._as_server_user:
            account = pwd.getpwnam(SERVER_USER)
            for path in (self.root, *self.root.rglob("*")):
                os.chown(path, account.pw_uid, account.pw_gid)

    def _env(self, node: Node) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            # The cookie is $HOME/.erlang.cookie, for the nodes and rabbitmqctl alike.
            "HOME": str(self.root),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONFIG_FILE": str(node.home / "rabbitmq"),  # .conf is implied
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(node.home / "advanced.config"),
            "RABBITMQ_MNESIA_BASE": str(node.home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.home / "log"),
            "RABBITMQ_PID_FILE": str(node.home / "rabbitmq.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def _user(self) -> dict:
        if not self._as_server_user:
            return {}
        return {"user": SERVER_USER, "group": SERVER_USER, "extra_groups": []}

    # -- commands -----------------------------------------------------------------------

    def ctl(self, node: Node, *args: str, tool: str = "rabbitmqctl", timeout: float = 0) -> str:
        """`rabbitmqctl -n NODE ARGS` (or another CLI `tool`); its stdout, raising with its
        stderr when it fails."""
        done = subprocess.run(
            [str(RABBITMQ_BIN / tool), "-n", node.name, *args],
            env=self._env(node),
            capture_output=True,
            text=True,
            timeout=timeout or CTL_TIMEOUT_S,
            start_new_session=True,
            **self._user(),
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{tool} -n {node.name} {' '.join(args)} exited {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-500:]}"
            )
        return done.stdout

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Boot the nodes, join the second and third to the first, check the membership."""
        self._write_files()
        for node in self.nodes:
            progress(f"cluster: starting {node.name} (amqp {node.amqp_port})")
            with (node.home / "server.out").open("ab") as out:
                node.process = subprocess.Popen(
                    [str(RABBITMQ_BIN / "rabbitmq-server")],
                    env=self._env(node),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **self._user(),
                )
        for node in self.nodes:
            self.await_startup(node)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            progress(f"cluster: {node.name} joins {first.name}")
            self.ctl(node, "stop_app")
            self.ctl(node, "reset")
            self.ctl(node, "join_cluster", first.name)
            self.ctl(node, "start_app")
            self.await_startup(node)
        running = self.running_nodes(first)
        if sorted(running) != sorted(node.name for node in self.nodes):
            raise RuntimeError(f"cluster_status lists {running}")
        progress(f"cluster: {len(running)} nodes running, data under {self.root}")

    def await_startup(self, node: Node) -> None:
        """Wait until the node's application runs (its AMQP port answers)."""
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(
                    f"{node.name} exited {node.process.returncode}; see {node.home}/server.out "
                    f"and {node.home}/log"
                )
            try:
                self.ctl(node, "await_startup", "--timeout", "30", timeout=60)
                return
            except (RuntimeError, subprocess.TimeoutExpired):
                time.sleep(1)
        raise TimeoutError(f"{node.name} did not start within {BOOT_TIMEOUT_S}s")

    def running_nodes(self, via: Node) -> list[str]:
        """The running nodes, as `cluster_status` on `via` reports them."""
        return json.loads(self.ctl(via, "cluster_status", "--formatter", "json"))["running_nodes"]

    def replicas(self, via: Node, queue: str) -> dict[str, str]:
        """Node -> its raft state ("leader", "follower", ...) for quorum queue `queue`."""
        status = json.loads(
            self.ctl(via, "quorum_status", queue, "--formatter", "json", tool="rabbitmq-queues")
        )
        return {row["Node Name"]: row["Raft State"] for row in status}

    def leader(self, via: Node, queue: str) -> str | None:
        states = self.replicas(via, queue)
        return next((node for node, state in states.items() if state == "leader"), None)

    def stop_app(self, node: Node) -> None:
        """A node lost: its application stops, every connection to it drops."""
        self.ctl(node, "stop_app")

    def start_app(self, node: Node) -> None:
        self.ctl(node, "start_app")
        self.await_startup(node)

    def stop(self, keep_files: bool = False) -> None:
        """End every node, whatever state it is in; remove the data unless `keep_files`."""
        if self._stopped:
            return
        self._stopped = True
        for node in self.nodes:
            if node.process is None:
                continue
            if node.process.poll() is None:
                try:
                    self.ctl(node, "stop", timeout=STOP_TIMEOUT_S)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    progress(f"cluster: stopping {node.name} failed ({exc}); killing it")
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.process.wait(timeout=STOP_TIMEOUT_S)
            # The process group holds beam.smp and its helpers (erl_child_setup, ...).
            with_suppressed_lookup(os.killpg, node.process.pid, signal.SIGKILL)
            with_suppressed_lookup(node.process.wait, 10)
        for pid in self._leftover_pids():
            progress(f"cluster: killing leftover process {pid}")
            with_suppressed_lookup(os.kill, pid, signal.SIGKILL)
        if keep_files:
            progress(f"cluster: node data and logs kept under {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)
        progress("cluster: nodes stopped")

    def _leftover_pids(self) -> list[int]:
        """Processes whose command line names one of our nodes (none, normally)."""
        marker = f"-{self.run_id}@localhost".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if marker in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
        return pids


def with_suppressed_lookup(action, *args) -> None:
    """Run a clean-up step that fails harmlessly when its process is already gone."""
    with contextlib.suppress(
        ProcessLookupError, ChildProcessError, subprocess.TimeoutExpired, PermissionError
    ):
        action(*args)
