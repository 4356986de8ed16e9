"""Django's own cache tests against ``CachecoreCache``: the proof it is a Django backend.

Django's source distribution ships ``tests/cache/tests.py``, whose ``BaseCacheTests`` is
the contract every built-in backend runs. This module downloads that distribution once
(``pip download``, the version of the installed Django, kept under the user's cache
directory), writes a small test module into its ``tests/cache/`` for this run, and runs
it with Django's own ``tests/runtests.py`` in a subprocess: one ``BaseCacheTests`` class
per target (``memory://``, the newest Redis, Valkey and KeyDB binary found, and that
Valkey again with the near cache on), each configured exactly as Django configures its
own ``RedisCacheTests``: the cull caches excluded (so the three cull tests skip, as they
do for ``RedisCache``), nothing else changed. Every other test must pass.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import django
import pytest

from cachecore.testing.pytest_plugin import ServerPool
from cachecore.testing.servers import ServerBinary, find_server_binaries

CULL_TESTS = frozenset({"test_cull", "test_zero_cull", "test_cull_delete_when_store_empty"})
"""The tests Django's RedisCacheTests skips: it excludes the cull caches, as we do."""

MIN_TESTS = 50
"""BaseCacheTests has 56 tests in Django 5.2; fewer means the module did not load."""

SUITE_TIMEOUT = 600


def _newest_per_kind() -> list[ServerBinary]:
    newest: dict[str, ServerBinary] = {}
    for binary in find_server_binaries():  # sorted by (kind, version)
        newest[binary.kind] = binary
    return list(newest.values())


SERVER_TARGETS = _newest_per_kind()
NEAR_TARGET = next((b for b in SERVER_TARGETS if b.kind == "valkey"), None)
"""The server that also runs the suite with the near cache on (OPTIONS near_cache)."""
TARGETS = [
    "memory",
    *(b.id for b in SERVER_TARGETS),
    *([f"{NEAR_TARGET.id}-near"] if NEAR_TARGET else []),
]


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cachecore" / "django-sdist"


def django_tests_dir() -> Path:
    """The ``tests/`` tree of the installed Django's source distribution, downloaded and
    unpacked on first use (a file lock keeps concurrent sessions from racing)."""
    version = django.__version__
    root = _cache_root()
    unpacked = root / f"django-{version}"
    tests = unpacked / "tests"
    if (tests / "runtests.py").is_file():
        return tests
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (tests / "runtests.py").is_file():
            return tests
        with tempfile.TemporaryDirectory(dir=root) as work:
            download = subprocess.run(
                [
                    *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
                    *("--no-binary", ":all:", "--dest", work, f"django=={version}"),
                ],
                capture_output=True,
                text=True,
                timeout=SUITE_TIMEOUT,
                check=False,
            )
            if download.returncode != 0:
                pytest.fail(
                    f"cannot download Django {version}'s source distribution from PyPI:\n"
                    f"{download.stdout}\n{download.stderr}"
                )
            (archive,) = Path(work).glob("*.tar.gz")
            top = f"django-{version}/tests/"
            with tarfile.open(archive) as tar:
                members = [m for m in tar.getmembers() if m.name.startswith(top)]
                tar.extractall(work, members=members, filter="data")
            # Renamed into place whole: a reader sees all of it or nothing.
            os.replace(Path(work) / f"django-{version}", unpacked)
    return tests


@dataclass
class ClassResult:
    """What Django's runner reported for one generated test class."""

    passed: set[str] = field(default_factory=set)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)


@dataclass
class SuiteRun:
    """One run of the generated module: every class's results and the whole output."""

    returncode: int
    output: str
    seconds: float
    classes: dict[str, ClassResult]


_CLASS_PREFIX = "Cachecore_"
# "test_x (cache.module.Class.test_x)" then, when the test has a docstring, its first
# line on the next line; then " ... ok" / " ... skipped 'why'" / " ... FAIL" / " ... ERROR".
_OUTCOME = re.compile(
    r"^(test_\w+) \(cache\.\w+\.(\w+)\.test_\w+\)\n?(?:[^\n]*?)? \.\.\. "
    r"(ok|skipped (?:'(?P<why1>[^\n]*)'|\"(?P<why2>[^\n]*)\")|FAIL|ERROR)",
    re.MULTILINE,
)
_FAILURE = re.compile(r"^(?:FAIL|ERROR): (test_\w+) \(cache\.\w+\.(\w+)\.", re.MULTILINE)


def class_name(target: str) -> str:
    """The generated class of ``target`` (``memory`` or a binary id such as valkey-9.1.2)."""
    return _CLASS_PREFIX + re.sub(r"\W", "_", target)


def parse(output: str) -> dict[str, ClassResult]:
    """Each class's passed, skipped and failed tests from ``runtests.py -v 2`` output."""
    classes: dict[str, ClassResult] = {}
    for match in _OUTCOME.finditer(output):
        test, cls, outcome = match.group(1), match.group(2), match.group(3)
        result = classes.setdefault(cls, ClassResult())
        if outcome == "ok":
            result.passed.add(test)
        elif outcome.startswith("skipped"):
            result.skipped[test] = match.group("why1") or match.group("why2") or ""
        else:
            result.failed.add(test)
    for match in _FAILURE.finditer(output):
        classes.setdefault(match.group(2), ClassResult()).failed.add(match.group(1))
    return classes


def suite_module(locations: dict[str, str]) -> str:
    """The test module: per target, Django's BaseCacheTests configured the way Django
    configures its RedisCacheTests, with CachecoreCache at that location."""
    header = """\
        from django.test import TestCase, override_settings

        from cache.tests import BaseCacheTests, caches_setting_for_tests, redis_excluded_caches
        """
    parts = [textwrap.dedent(header)]
    for target, location in locations.items():
        parts.append(
            textwrap.dedent(f"""

                @override_settings(
                    CACHES=caches_setting_for_tests(
                        base={{
                            "BACKEND": "cachecore.contrib.django.CachecoreCache",
                            "LOCATION": {location!r},
                        }},
                        exclude=redis_excluded_caches,
                    )
                )
                class {class_name(target)}(BaseCacheTests, TestCase):
                    pass
                """)
        )
    return "".join(parts)


@contextlib.contextmanager
def generated_module(tests_dir: Path, source: str) -> Iterator[str]:
    """Write ``source`` into the sdist's ``tests/cache/`` under a name unique to this run;
    yield its test label; remove it afterwards."""
    name = f"cachecore_suite_{os.getpid()}_{secrets.token_hex(4)}"
    path = tests_dir / "cache" / f"{name}.py"
    path.write_text(source)
    try:
        yield f"cache.{name}"
    finally:
        path.unlink(missing_ok=True)


def run_suite(locations: dict[str, str]) -> SuiteRun:
    """Run Django's cache tests for every target in one ``runtests.py`` call (one worker
    per target: the tests mostly sleep, waiting for keys to expire)."""
    tests_dir = django_tests_dir()
    with generated_module(tests_dir, suite_module(locations)) as label:
        started = time.monotonic()
        completed = subprocess.run(
            [
                *(sys.executable, "runtests.py", "--verbosity", "2", "--noinput"),
                *("--parallel", str(len(locations)), label),
            ],
            cwd=tests_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SUITE_TIMEOUT,
            check=False,
        )
        seconds = time.monotonic() - started
    output = completed.stdout + completed.stderr
    return SuiteRun(completed.returncode, output, seconds, parse(output))


@pytest.fixture(scope="session")
def suite_run(cachecore_servers: ServerPool) -> SuiteRun:
    """Django's cache tests, run once for every target."""
    locations = {"memory": "memory://django-suite"}
    for binary in SERVER_TARGETS:
        server = cachecore_servers.shared(binary)
        # DB 9: the other tests of the session use DB 0 of these shared servers, and
        # the suite's tearDown empties its database after every test.
        locations[binary.id] = server.url(binary.kind, db=9)
        if binary is NEAR_TARGET:  # its own database: each class empties its own
            locations[f"{binary.id}-near"] = server.url(binary.kind, db=10) + "?near_cache=true"
    return run_suite(locations)


@pytest.mark.parametrize("target", TARGETS)
def test_django_cache_suite_passes(suite_run: SuiteRun, target: str) -> None:
    result = suite_run.classes.get(class_name(target), ClassResult())
    context = f"runtests.py output ({suite_run.seconds:.1f} s):\n{suite_run.output[-20000:]}"
    assert not result.failed, f"{sorted(result.failed)} failed on {target}\n{context}"
    assert set(result.skipped) == CULL_TESTS, context
    assert all("Culling isn't implemented" in why for why in result.skipped.values()), context
    assert len(result.passed) + len(CULL_TESTS) >= MIN_TESTS, context
    # Every target ran the same tests: none was lost to a parsing or loading problem.
    everyone = [r.passed | set(r.skipped) for r in suite_run.classes.values()]
    assert all(names == everyone[0] for names in everyone), context


def test_django_suite_run_is_clean(suite_run: SuiteRun) -> None:
    context = f"runtests.py output ({suite_run.seconds:.1f} s):\n{suite_run.output[-20000:]}"
    assert suite_run.returncode == 0, context
    assert re.search(r"^OK \(skipped=\d+\)$", suite_run.output, re.MULTILINE), context
    assert set(suite_run.classes) == {class_name(t) for t in TARGETS}, context
