#!/usr/bin/env python3
"""What Python users have today, timed on this machine: prints JSON {name: ns per operation}.

Run by compare.sh (group `python`) next to our Swift benchmarks, so the ratios come from one
run. The multiprocessing.Value timings need only the standard library; the others need the
PyPI packages multiprocessing-utils and fasteners and are left out without them.
"""
import json, os, sys, tempfile, timeit

def best(stmt, setup_globals, number):
    return min(timeit.repeat(stmt, globals=setup_globals, number=number, repeat=5)) / number * 1e9

results = {}
try:
    import multiprocessing
    value = multiprocessing.Value("q", 0)
    def value_read():
        with value.get_lock():
            return value.value
    def value_increment():
        with value.get_lock():
            value.value += 1
    results["multiprocessing.Value locked read"] = best("f()", {"f": value_read}, 200_000)
    results["multiprocessing.Value locked increment"] = best("f()", {"f": value_increment}, 200_000)
except (ImportError, OSError):
    pass
try:
    import multiprocessing_utils
    local = multiprocessing_utils.local()
    local.x = 1
    results["multiprocessing_utils.local read"] = best("local.x", {"local": local}, 200_000)
except ImportError:
    pass
try:
    import fasteners
    path = os.path.join(tempfile.mkdtemp(), "lock")
    rw = fasteners.InterProcessReaderWriterLock(path)
    def shared():
        rw.acquire_read_lock(); rw.release_read_lock()
    def exclusive():
        rw.acquire_write_lock(); rw.release_write_lock()
    results["fasteners read lock pair"] = best("f()", {"f": shared}, 20_000)
    results["fasteners write lock pair"] = best("f()", {"f": exclusive}, 20_000)
except ImportError:
    pass
json.dump(results, sys.stdout)
