"""Many processes on one directory (started with spawn): counters, the Lock recipe, and
a Deque used as a queue between producers and consumers."""

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
