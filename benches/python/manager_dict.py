#!/usr/bin/env python3
"""CPython's figure for benches/manager.rs: `d[k] = v; d[k]` on
`multiprocessing.Manager().dict()`, the same op pair our proxy bench times.

    python3 benches/python/manager_dict.py [--runs 5] [--iters 20000]

Prints one line: `python manager.dict set+get: MEDIAN us [MIN..MAX] over RUNS runs`.
Key b"key", value 16 bytes, as in the Rust bench; context 'fork'.
"""
import multiprocessing as mp
import statistics
import sys
import time


def arg(name, default):
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


def main():
    runs, iters = arg("--runs", 5), arg("--iters", 20000)
    key, value = b"key", b"v" * 16
    with mp.get_context("fork").Manager() as manager:
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
        f"python manager.dict set+get: {statistics.median(per_pair):.1f} us "
        f"[{min(per_pair):.1f}..{max(per_pair):.1f}] over {runs} runs"
    )


if __name__ == "__main__":
    main()
