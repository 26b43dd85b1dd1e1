#!/usr/bin/env python3
"""CPython's figure for benches/manager.rs: `d[k] = v; d[k]` on
`multiprocessing.Manager().dict()`, the same op pair our proxy bench times.

    python3 benches/python/manager_dict.py [--runs 5] [--iters 20000] [--pin]

Prints one line: `python manager.dict set+get[, pinned]: MEDIAN us [MIN..MAX] over RUNS runs`.
Key b"key", value 16 bytes, as in the Rust bench; context 'fork'. With --pin
the manager's server runs on the first allowed CPU and this process on the
second, as the Rust bench's pinned case.
"""
import os
import multiprocessing as mp
import statistics
import sys
import time


def arg(name, default):
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


def main():
    runs, iters = arg("--runs", 5), arg("--iters", 20000)
    key, value = b"key", b"v" * 16
    cpus = sorted(os.sched_getaffinity(0))
    pin = "--pin" in sys.argv and len(cpus) >= 2
    if pin:
        os.sched_setaffinity(0, {cpus[0]})  # the server inherits this
    with mp.get_context("fork").Manager() as manager:
        if pin:
            os.sched_setaffinity(0, {cpus[1]})
        d = manager.dict()
        for _ in range(iters // 10):  # warm up
            d[key] = value
            d[key]
        per_pair = []
        for _ in range(runs):
            start = time.perf_counter()
            for _ in range(iters):
                d[key] = value
                d[key]
            per_pair.append((time.perf_counter() - start) / iters * 1e6)
    print(
        f"python manager.dict set+get{', pinned' if pin else ''}: "
        f"{statistics.median(per_pair):.1f} us "
        f"[{min(per_pair):.1f}..{max(per_pair):.1f}] over {runs} runs"
    )


if __name__ == "__main__":
    main()
