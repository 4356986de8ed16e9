"""Testing support shipped with cachecore: real throwaway servers and the conformance
suite every backend, first- or third-party, runs.

* :mod:`cachecore.testing.servers`: find server binaries, start and stop real servers.
* :mod:`cachecore.testing.conformance`: :class:`CacheConformance` and
  :class:`ServerFaultConformance`, test classes a backend subclasses by supplying a
  ``cache_factory`` fixture.
* :mod:`cachecore.testing.pytest_plugin`: fixtures (loaded automatically by pytest
  through the ``pytest11`` entry point).
"""
