"""python-diskcache side of diskcache-compare.

The harness (src/main.rs) runs this script with one JSON argument naming a command and
its parameters, and reads one JSON object from stdout. Every workload here mirrors the
Rust side in src/workloads.rs: same keys (b"key-%010d"), same value sizes, and the same
random sequences (random.Random(seed), which the harness reproduces bit for bit), so each
engine runs the identical sequence of operations.

Timings are integer nanoseconds from time.perf_counter_ns(), taken around the single
diskcache call, as python-diskcache's own tests/benchmark_core.py does with time.time().
"""

import json
import os
import random
import sys
import time

import diskcache

UNLIMITED = 2**62  # size_limit for workloads that must not cull (every engine gets the same)
BATCH = 1000  # items per transaction when loading a cache (not timed)
DELETE_STRIDE = 1000003  # a prime: (i * stride) % n is a permutation of range(n)


def key(i):
    return b"key-%010d" % i


def rss_anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def open_cache(d, policy=None, unlimited=True):
    kwargs = {}
    if unlimited:
        kwargs["size_limit"] = UNLIMITED
    if policy is not None:
        kwargs["eviction_policy"] = policy
    return diskcache.Cache(d, **kwargs)


def populate(cache, start, end, value):
    i = start
    while i < end:
        stop = min(i + BATCH, end)
        with cache.transact():
            for k in range(i, stop):
                cache.set(key(k), value)
        i = stop


def timed(op, keys, max_samples, budget_ns):
    """Times op(k) for each key until max_samples or the time budget is used up."""
    out = []
    clock = time.perf_counter_ns
    begin = clock()
    for k in keys:
        if len(out) >= max_samples:
            break
        t0 = clock()
        op(k)
        t1 = clock()
        out.append(t1 - t0)
        if t1 - begin > budget_ns:
            break
    return out


def randkeys(seed, n, skip=None):
    rng = random.Random(seed)
    while True:
        k = rng.randrange(n)
        if skip is not None and skip[k]:
            continue
        yield key(k)


def cmd_latency(p):
    d, n, size = p["dir"], p["n"], p["value_size"]
    value = b"v" * size
    max_samples, budget = p["max_samples"], p["budget_ns"]
    cache = open_cache(d, "least-recently-stored")
    populate(cache, 0, n, value)
    out = {}

    def get(k):
        if cache.get(k) is None:
            raise RuntimeError("get missed")

    out["get"] = timed(get, randkeys(p["seed_get"], n), max_samples, budget)
    out["set"] = timed(lambda k: cache.set(k, value), randkeys(p["seed_set"], n), max_samples, budget)

    deleted = bytearray(n)
    limit = min(max_samples, p["max_deletes"])

    def delete_keys():
        for j in range(limit):
            i = ((2 * j + p["delete_offset"]) * DELETE_STRIDE) % n
            deleted[i] = 1
            yield key(i)

    def delete(k):
        if not cache.delete(k):
            raise RuntimeError("delete missed")

    out["delete"] = timed(delete, delete_keys(), limit, budget)
    # Keys deleted by the other variants of the Rust engines are skipped there; here only ours.
    cache.close()
    cache = open_cache(d, "least-recently-used")
    out["lru_get"] = timed(get, randkeys(p["seed_lru"], n, deleted), max_samples, budget)
    cache.close()
    return out


def cmd_preload_mix(p):
    cache = diskcache.Cache(p["dir"])
    for k in range(p["range"]):
        kb = str(k).encode("utf-8")
        cache.set(kb, kb)
    cache.close()
    return {}


def cmd_mix_worker(p):
    """tests/benchmark_core.py's worker: 90% get, 9% set, 1% delete."""
    random.seed(p["num"])
    time.sleep(0.01)  # let the other processes start, as benchmark_core.py does
    cache = diskcache.Cache(p["dir"])
    ops, warmup, rng_range = p["ops"], p["warmup"], p["range"]
    t = {"get": [], "set": [], "delete": []}
    miss = {"get": 0, "set": 0, "delete": 0}
    failed = {"get": 0, "set": 0, "delete": 0}
    clock = time.perf_counter_ns
    start_wall = None
    for count in range(ops):
        if count == warmup + 1:
            start_wall = time.time_ns()
        k = str(random.randrange(rng_range)).encode("utf-8")
        value = str(count).encode("utf-8") * random.randrange(1, 100)
        choice = random.random()
        is_miss = False
        try:
            if choice < 0.900:
                action = "get"
                t0 = clock()
                result = cache.get(k)
                t1 = clock()
                is_miss = result is None
            elif choice < 0.990:
                action = "set"
                t0 = clock()
                result = cache.set(k, value)
                t1 = clock()
                is_miss = result is False
            else:
                action = "delete"
                t0 = clock()
                result = cache.delete(k)
                t1 = clock()
                is_miss = result is False
        except diskcache.Timeout:
            t1 = clock()
            failed[action] += 1
            is_miss = False
        if count > warmup:
            t[action].append(t1 - t0)
            if is_miss:
                miss[action] += 1
    end_wall = time.time_ns()
    cache.close()
    return {
        "times": t,
        "misses": miss,
        "failed": failed,
        "start_ns": start_wall or end_wall,
        "end_ns": end_wall,
    }


def cmd_populate(p):
    cache = open_cache(p["dir"])
    t0 = time.perf_counter_ns()
    populate(cache, p["start"], p["end"], b"v" * p["value_size"])
    t1 = time.perf_counter_ns()
    cache.close()
    return {"ns": t1 - t0}


def cmd_open(p):
    """A fresh process opens an existing cache and does one get (then more, for memory)."""
    before = rss_anon()
    t0 = time.perf_counter_ns()
    cache = diskcache.Cache(p["dir"])
    hit = cache.get(key(p["key"])) is not None
    t1 = time.perf_counter_ns()
    after_open = rss_anon()
    hits = 0
    rng = random.Random(p["seed"])
    for _ in range(p["gets"]):
        hits += cache.get(key(rng.randrange(p["n"]))) is not None
    after_gets = rss_anon()
    cache.close()
    return {
        "open_ns": t1 - t0,
        "hit": hit,
        "rss_before": before,
        "rss_open": after_open,
        "rss_gets": after_gets,
        "hits": hits,
    }


def cmd_overwrite(p):
    cache = open_cache(p["dir"])
    value = b"v" * p["value_size"]
    rng = random.Random(p["seed"])
    n = p["n"]
    t0 = time.perf_counter_ns()
    for _ in range(p["count"]):
        cache.set(key(rng.randrange(n)), value)
    t1 = time.perf_counter_ns()
    cache.close()
    return {"ns": t1 - t0}


def cmd_txn(p):
    d, n = p["dir"], p["n"]
    value = b"v" * p["value_size"]
    cache = open_cache(d, "least-recently-stored")
    populate(cache, 0, n, value)
    rng = random.Random(p["seed"])
    out = []
    clock = time.perf_counter_ns
    begin = clock()
    while len(out) < p["max_samples"]:
        keys = [key(rng.randrange(n)) for _ in range(p["txn_size"])]
        t0 = clock()
        with cache.transact():
            for k in keys:
                cache.set(k, value)
        t1 = clock()
        out.append(t1 - t0)
        if t1 - begin > p["budget_ns"]:
            break
    cache.close()
    return {"txn": out}


def cmd_version(_p):
    return {"version": diskcache.__version__, "python": sys.version.split()[0]}


COMMANDS = {
    "latency": cmd_latency,
    "preload_mix": cmd_preload_mix,
    "mix_worker": cmd_mix_worker,
    "populate": cmd_populate,
    "open": cmd_open,
    "overwrite": cmd_overwrite,
    "txn": cmd_txn,
    "version": cmd_version,
}


def main():
    p = json.loads(sys.argv[1])
    result = COMMANDS[p["cmd"]](p)
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
