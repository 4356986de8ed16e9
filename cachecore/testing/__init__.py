"""Testing support shipped with cachecore: real throwaway servers and the conformance
suite every backend, first- or third-party, runs.

* :mod:`cachecore.testing.servers`: find server binaries, start and stop real servers.
* :mod:`cachecore.testing.conformance`: :class:`CacheConformance` and
  :class:`ServerFaultConformance`, test classes a backend subclasses by supplying a
  ``cache_factory`` fixture.
* :mod:`cachecore.testing.cluster` and :mod:`cachecore.testing.sentinel`: a real
  cluster, a real Sentinel setup.
* :mod:`cachecore.testing.pytest_plugin`: fixtures (loaded automatically by pytest
  through the ``pytest11`` entry point; loading it imports none of the modules above);
  :mod:`cachecore.testing.pools` holds the session pools they hand out.
"""
