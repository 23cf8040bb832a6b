"""Many processes on one directory (started with spawn, or forked): counters, the Lock
recipe, a Deque used as a queue between producers and consumers, and concurrent creation."""

import multiprocessing

import diskcache as dc

CONTEXT = multiprocessing.get_context('spawn')


def run(target, args_list, timeout=120):
    procs = [CONTEXT.Process(target=target, args=args) for args in args_list]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout)
        assert proc.exitcode == 0, 'a worker failed'


def _incr(directory):
    cache = dc.Cache(directory)
    for _ in range(100):
        cache.incr('n', retry=True)


def test_eight_processes_incr_without_losing_counts(tmp_path):
    directory = str(tmp_path / 'c')
    dc.Cache(directory)
    run(_incr, [(directory,)] * 8)
    assert dc.Cache(directory)['n'] == 800


def _locked_increments(directory):
    cache = dc.Cache(directory)
    lock = dc.Lock(cache, 'lock', expire=60)
    for _ in range(50):
        with lock:
            # A read-modify-write that only the lock makes safe.
            value = cache.get('counter', 0)
            cache.set('counter', value + 1)


def test_the_lock_recipe_protects_a_counter_across_processes(tmp_path):
    directory = str(tmp_path / 'c')
    dc.Cache(directory)
    run(_locked_increments, [(directory,)] * 4)
    assert dc.Cache(directory)['counter'] == 200


def _produce(directory, start):
    deque = dc.Deque(directory=directory)
    for item in range(start, start + 100):
        deque.append(('item', item))


def _consume(directory, results):
    deque = dc.Deque(directory=directory)
    out = dc.Index(results)
    taken = []
    misses = 0
    while misses < 400:
        try:
            taken.append(deque.popleft()[1])
            misses = 0
        except IndexError:
            misses += 1
            import time

            time.sleep(0.005)
    out[CONTEXT.current_process().name] = taken


def test_a_deque_between_processes_loses_and_duplicates_nothing(tmp_path):
    directory = str(tmp_path / 'q')
    results = str(tmp_path / 'results')
    dc.Deque(directory=directory)
    dc.Index(results)
    producers = [CONTEXT.Process(target=_produce, args=(directory, n * 100)) for n in range(3)]
    consumers = [CONTEXT.Process(target=_consume, args=(directory, results)) for _ in range(3)]
    for proc in producers + consumers:
        proc.start()
    for proc in producers + consumers:
        proc.join(120)
        assert proc.exitcode == 0
    taken = [item for items in dc.Index(results).values() for item in items]
    assert sorted(taken) == list(range(300))
    assert len(dc.Deque(directory=directory)) == 0


# Run in a process of its own: forking the test process, which may have threads by now,
# is not safe.
CREATE_AT_ONCE = """
import os, sys
import diskcache as dc
root = sys.argv[1]
for round_ in range(10):
    directory = os.path.join(root, 'c%d' % round_)
    children = []
    for number in range(8):
        pid = os.fork()
        if pid == 0:
            try:
                dc.Cache(directory, timeout=0.001).set(number, number, retry=True)
                os._exit(0)
            except BaseException:
                os._exit(1)
        children.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    assert codes == [0] * 8, (round_, codes)
    assert sorted(dc.Cache(directory)) == list(range(8)), round_
print('all opened')
"""


def test_processes_creating_one_cache_at_once_all_open(tmp_path):
    # Eight processes create the same new cache at once, ten times over: each one opens
    # it (a creator's first files appear before its meta file, and a short lock timeout
    # makes the others wait for the writer lock; neither is an error).
    import os
    import subprocess
    import sys

    if not hasattr(os, 'fork'):
        return
    done = subprocess.run(
        [sys.executable, '-c', CREATE_AT_ONCE, str(tmp_path)], capture_output=True, text=True,
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.strip() == 'all opened', done.stderr
