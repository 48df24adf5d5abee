"""A real RabbitMQ node for the tests: Debian's ``rabbitmq-server`` started as a throwaway
node on 127.0.0.1, on free ports, with everything it writes in a temporary directory, and
stopped (with its own epmd) at the end.

The node is its own: its name, AMQP port, distribution port and epmd port are picked here,
its Mnesia database, logs, config, enabled-plugins file (an empty list) and Erlang cookie
(``HOME``) live in the directory. So a system RabbitMQ the package may have started (on
5672, with the system epmd on 4369) is neither needed nor touched. Debian's
``/usr/sbin/rabbitmq-server`` switches to the ``rabbitmq`` user when run as root; the
script behind it does not, so this works as root (CI) and as a normal user.

``.ci/run`` installs rabbitmq-server where it is missing; a test never skips for want of it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from kombu import Connection

HOST = "127.0.0.1"
START_DEADLINE = 60.0  # seconds for a node to accept an AMQP connection (Erlang boots slowly)
STOP_DEADLINE = 15.0  # seconds a SIGTERM gets (a clean stop takes about one) before SIGKILL
# The script behind Debian's wrapper (and the generic Unix package's layout)
SERVER_SCRIPTS = ("/usr/lib/rabbitmq/bin/rabbitmq-server",
                  "/usr/local/lib/rabbitmq/bin/rabbitmq-server")
CONFIG = """\
listeners.tcp.1 = {host}:{port}
log.console = false
log.file.level = info
# a throwaway node on a shared test machine: do not block publishers over a small disk
disk_free_limit.absolute = 10MB
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _listens(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1.0):
        return True
    return False


def _find(candidates: tuple[str, ...], name: str) -> str:
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(f"{name} is not installed (apt-get install rabbitmq-server)")


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL to the process's whole group (its session) if it hangs."""
    if process is None:
        return
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_DEADLINE)
    with contextlib.suppress(ProcessLookupError):  # what it left in its group, for sure
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


class RabbitMQServer:
    """One RabbitMQ node (and the epmd it registers with) in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.script = _find(SERVER_SCRIPTS, "rabbitmq-server")
        self.epmd_binary = _find((shutil.which("epmd") or "", "/usr/lib/erlang/bin/epmd"),
                                 "epmd")
        self.directory = directory
        self.port = _free_port()
        self.dist_port = _free_port()
        self.epmd_port = _free_port()
        self.nodename = f"offload-test-{self.port}@localhost"
        self.process: subprocess.Popen[bytes] | None = None
        self.epmd: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The AMQP URL of the node's default vhost, as the default guest user (allowed
        from loopback only, which is where the tests connect from)."""
        return f"amqp://guest:guest@{HOST}:{self.port}//"

    def environment(self) -> dict[str, str]:
        """The node's settings: ours, none inherited from a RabbitMQ or Erlang set-up."""
        base = {key: value for key, value in os.environ.items()
                if not key.startswith(("RABBITMQ_", "ERL_"))}
        d = self.directory
        return {**base, "HOME": str(d / "home"),  # the Erlang cookie goes there
                "ERL_EPMD_PORT": str(self.epmd_port), "ERL_EPMD_ADDRESS": HOST,
                "RABBITMQ_NODENAME": self.nodename, "RABBITMQ_NODE_IP_ADDRESS": HOST,
                "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_MNESIA_BASE": str(d / "mnesia"), "RABBITMQ_LOG_BASE": str(d / "log"),
                "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),  # absent
                "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),  # empty
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),  # []
                "RABBITMQ_PLUGINS_EXPAND_DIR": str(d / "plugins-expand"),
                "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid"),
                # the distribution listener on loopback too, not on every interface
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface "
                                                       "{127,0,0,1}"}

    def _write_files(self) -> None:
        d = self.directory
        for sub in ("home", "mnesia", "log"):
            (d / sub).mkdir(exist_ok=True)
        (d / "rabbitmq.conf").write_text(CONFIG.format(host=HOST, port=self.port))
        (d / "rabbitmq-env.conf").write_text("")
        (d / "enabled_plugins").write_text("[].\n")

    def start(self) -> None:
        """Start epmd, then the node; return once it accepts an AMQP connection."""
        self._write_files()
        self._start_epmd()
        with open(self.directory / "rabbitmq.out", "ab") as out:
            # a session of its own: the script, beam.smp and its helpers, killed as one
            self.process = subprocess.Popen(
                [self.script], cwd=self.directory, env=self.environment(),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + START_DEADLINE
        while not self.accepts_amqp():
            if self.process.poll() is not None:
                output = self.log_tail()
                self.stop()
                raise RuntimeError(f"rabbitmq-server exited: {output}")
            if time.monotonic() > deadline:
                output = self.log_tail()
                self.stop()
                raise RuntimeError(f"rabbitmq-server did not accept AMQP: {output}")
            time.sleep(0.1)  # a bounded poll for the node's first answer

    def _start_epmd(self) -> None:
        """The node's own epmd, in the foreground so that it is ours to stop (a node that
        finds none starts a daemon that would outlive it)."""
        with open(self.directory / "epmd.out", "ab") as out:
            self.epmd = subprocess.Popen(
                [self.epmd_binary, "-port", str(self.epmd_port), "-address", HOST],
                env=self.environment(), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_DEADLINE
        while not _listens(self.epmd_port):
            if self.epmd.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"epmd did not start on port {self.epmd_port}")
            time.sleep(0.02)  # a bounded poll for epmd's socket

    def accepts_amqp(self) -> bool:
        """Whether the node completes an AMQP handshake and login now."""
        try:
            with Connection(self.url, connect_timeout=1.0) as connection:
                connection.connect()
            return True
        except Exception:  # refused, reset, or not yet booted far enough to log in
            return False

    def stop(self) -> None:
        """Stop the node (SIGTERM: a clean stop; SIGKILL if it hangs), then its epmd."""
        _stop(self.process)
        self.process = None
        _stop(self.epmd)
        self.epmd = None

    def log_tail(self) -> str:
        parts = []
        for path in (self.directory / "rabbitmq.out",
                     self.directory / "log" / f"{self.nodename}.log"):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)


@contextlib.contextmanager
def running_rabbitmq() -> Iterator[RabbitMQServer]:
    """A started node in a fresh temporary directory, stopped and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="offload-rabbitmq-") as directory:
        server = RabbitMQServer(Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()
