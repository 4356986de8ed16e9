"""``python -m benchmarks``: run the benchmark suite (``--help`` for options)."""

from benchmarks.suite import main

raise SystemExit(main())
