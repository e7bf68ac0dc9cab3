"""Fixtures of the Flower tests: an in-process grid (no processes) and a loopback deployment (real processes)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

flwr = pytest.importorskip("flwr")

from flwr.app import Context, Error, Message, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import Grid  # noqa: E402
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects  # noqa: E402
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUN_ID = 7


def over_the_wire(content: RecordDict) -> RecordDict:
    """``content`` deflated to bytes and inflated back, as Flower ships it between processes."""
    objects = get_all_nested_objects(content)
    rebuilt = inflate_object_from_contents(content.object_id, {i: o.deflate() for i, o in objects.items()})
    assert isinstance(rebuilt, RecordDict)
    return rebuilt


@pytest.fixture
def wire() -> Callable[[RecordDict], RecordDict]:
    """:func:`over_the_wire`, for tests."""
    return over_the_wire


@pytest.fixture
def task_identity() -> Iterator[None]:
    """The identity a ServerApp process has (``Message(...)`` needs a run id); restored afterwards."""
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, RUN_ID, 1
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


class InProcessGrid(Grid):  # type: ignore[misc]
    """A Flower ``Grid`` whose nodes are ClientApps called in this process, every message serialized.

    ``silent`` nodes never reply (a crashed process); ``tamper(node, content)`` may rewrite a reply.
    """

    def __init__(
        self,
        app: ClientApp,
        num_nodes: int,
        *,
        run_config: dict[str, Any] | None = None,
        silent: Iterable[int] = (),
        tamper: Callable[[int, RecordDict], RecordDict] | None = None,
    ) -> None:
        self.app, self.silent, self.tamper = app, set(silent), tamper
        self.node_ids = [1000 + 17 * i for i in range(num_nodes)]  # not in partition order on purpose
        self.node_ids.reverse()
        config = run_config or {}
        self.contexts = {
            node: Context(RUN_ID, node, {"partition-id": i, "num-partitions": num_nodes}, RecordDict(), config)
            for i, node in enumerate(sorted(self.node_ids))
        }
        self.sent: list[Message] = []

    def set_run(self, run: Any) -> None:
        """Unused."""

    @property
    def run(self) -> Any:
        """Unused."""
        raise NotImplementedError

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: Any = None
    ) -> Message:
        """As Flower's: an instruction message."""
        return Message(content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id)

    def get_node_ids(self) -> list[int]:
        """Every node, silent ones included (as a SuperLink lists a crashed node until its heartbeat expires)."""
        return list(self.node_ids)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        """Unused."""
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        """Unused."""
        raise NotImplementedError

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """Deliver each message (serialized) to its node's ClientApp; return the (serialized) replies."""
        replies = []
        for message in messages:
            self.sent.append(message)
            node = message.metadata.dst_node_id
            if node in self.silent:
                continue
            delivered = Message(over_the_wire(message.content), metadata=message.metadata)
            try:
                reply = self.app(delivered, self.contexts[node])
            except Exception as exc:  # what Flower's ClientApp runtime replies when the app raises
                reply = Message(Error(2, f"{type(exc).__name__}: {exc}"), reply_to=delivered)
            if reply.has_content():
                content = over_the_wire(reply.content)
                if self.tamper is not None:
                    content = self.tamper(node, content)
                reply = Message(content, metadata=reply.metadata)
            replies.append(reply)
        return replies


@pytest.fixture
def grid_class() -> type[InProcessGrid]:
    """:class:`InProcessGrid`, for tests."""
    return InProcessGrid


class LoopbackFederation:
    """A SuperLink and SuperNodes as separate OS processes on 127.0.0.1, each in its own session.

    Every process is stopped by its PID (``killpg`` of its session, so its SuperExec and ClientApp
    children go with it).
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.home = workdir / "flwr-home"
        self.home.mkdir(parents=True)
        self.env = {
            **os.environ,
            "FLWR_HOME": str(self.home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.nodes: list[subprocess.Popen[bytes]] = []
        self.link_port = 0

    @staticmethod
    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
            return port

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.workdir / log, "wb") as out:
            process = subprocess.Popen(
                args, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.workdir
            )
        self.processes.append(process)
        return process

    def start(self, num_nodes: int, timeout: float = 60.0) -> None:
        """Start the SuperLink, wait until it listens, start the SuperNodes, write the connection config."""
        self.link_port = self.free_port()
        link = self._spawn(
            [str(BIN / "flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(self.link_port),
             "--disable-runtime-dependency-installation"],
            "superlink.log",
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            assert link.poll() is None, self.log("superlink.log")
            try:
                socket.create_connection(("127.0.0.1", self.link_port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the SuperLink did not listen in time"
                time.sleep(0.2)
        for i in range(num_nodes):
            args = [str(BIN / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{self.link_port}",
                    "--host", "127.0.0.1", "--port", str(self.free_port()),
                    "--node-config", f"partition-id={i} num-partitions={num_nodes}"]  # fmt: skip
            self.nodes.append(self._spawn(args, f"supernode-{i}.log"))
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\naddress = "127.0.0.1:{self.link_port}"\n'
            "insecure = true\n"
        )

    def launch(self, app: Path, run_config: str) -> subprocess.Popen[bytes]:
        """``flwr run APP loopback --stream --run-config ...`` as another process."""
        return self._spawn(
            [str(BIN / "flwr"), "run", str(app), "loopback", "--stream", "--run-config", run_config], "flwr-run.log"
        )

    def log(self, name: str) -> str:
        return (self.workdir / name).read_text(errors="replace")

    def kill_node(self, index: int) -> None:
        """SIGKILL a SuperNode and its children: a machine that crashes."""
        os.killpg(self.nodes[index].pid, signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM every process group by PID, then SIGKILL what is left after 10 s."""
        for process in self.processes:
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def group_alive(pgid: int) -> list[int]:
    """PIDs of live (non-zombie) processes in process group ``pgid``."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


@pytest.fixture(name="group_alive")
def group_alive_fixture() -> Callable[[int], list[int]]:
    """:func:`group_alive`, for tests."""
    return group_alive


@pytest.fixture
def loopback(tmp_path: Path) -> Iterator[LoopbackFederation]:
    """A fresh loopback federation, stopped (every process by its PID) at the end of the test."""
    federation = LoopbackFederation(tmp_path)
    try:
        yield federation
    finally:
        federation.stop()
        leftovers = {p.pid: group_alive(p.pid) for p in federation.processes}
        assert not any(leftovers.values()), f"processes left running: {leftovers}"
