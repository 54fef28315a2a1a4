"""Benchmarks of admission against its neighbours, run side by side and reported as ratios.

``python -m bench`` (or ``make bench``) runs them all and writes ``bench/RESULTS.md``
and ``bench/results.json``; ``python -m bench --quick`` is a smaller run that writes
nothing unless ``--out`` is given.  Each benchmark module exposes ``run(...) -> Section``:

- :mod:`bench.fastpath`: the uncontended ``async with`` (benchmark 1);
- :mod:`bench.contended`: N tasks at once on a limiter of rate and burst N/2 (benchmark 2);
- :mod:`bench.waiters`: CPU per grant with 5k versus 100k queued waiters (benchmark 3);
- :mod:`bench.retune`: retune latency and the CPU cost of ``retune()`` (benchmark 4);
- :mod:`bench.policy`: policy evaluation cost per queue and trace replay speed (benchmark 5).

Absolute figures on a shared machine are noise; the ratios, measured in the same run,
are the result.  Nothing here talks to the network.
"""
