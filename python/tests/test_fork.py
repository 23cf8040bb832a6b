"""Handles made before os.fork() and used in the children, as gunicorn's pre-fork workers
and multiprocessing's fork start method use them: nothing is lost, locks and queues work
across the processes, and a lock held by another thread at the fork does not wedge the
child."""

import multiprocessing
import os
import threading
import time

import pytest

import diskcache as dc

pytestmark = pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs os.fork')

FORK = multiprocessing.get_context('fork') if hasattr(os, 'fork') else None

# Made in the parent, inherited by the pool's workers (set before the pool forks them).
INHERITED = {}


def _incr_inherited(_):
    cache = INHERITED['cache']
    for _ in range(100):
        cache.incr('n', retry=True)
    return os.getpid()


def test_eight_forked_workers_incr_through_an_inherited_handle(tmp_path):
    cache = dc.Cache(str(tmp_path / 'c'))
    cache['n'] = 0
    INHERITED['cache'] = cache
    try:
        with FORK.Pool(8) as pool:
            pids = pool.map(_incr_inherited, range(8))
    finally:
        INHERITED.clear()
    assert len(set(pids)) > 1
    assert cache['n'] == 800
    cache['after'] = 1  # the parent's handle still writes


def _locked_increments_inherited(_):
    cache = INHERITED['cache']
    lock = dc.Lock(cache, 'lock', expire=60)
    for _ in range(50):
        with lock:
            value = cache.get('counter', 0)
            cache.set('counter', value + 1)


def test_the_lock_recipe_on_an_inherited_handle_protects_a_counter(tmp_path):
    cache = dc.Cache(str(tmp_path / 'c'))
    INHERITED['cache'] = cache
    try:
        with FORK.Pool(4) as pool:
            pool.map(_locked_increments_inherited, range(4))
    finally:
        INHERITED.clear()
    assert cache['counter'] == 200


def test_an_inherited_deque_between_forked_processes_loses_and_duplicates_nothing(tmp_path):
    deque = dc.Deque(directory=str(tmp_path / 'q'))
    results = dc.Index(str(tmp_path / 'results'))

    def produce(start):
        for item in range(start, start + 100):
            deque.append(item)

    def consume():
        taken, misses = [], 0
        while misses < 400:
            try:
                taken.append(deque.popleft())
                misses = 0
            except IndexError:
                misses += 1
                time.sleep(0.005)
        results[os.getpid()] = taken

    procs = [FORK.Process(target=produce, args=(n * 100,)) for n in range(3)]
    procs += [FORK.Process(target=consume) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    taken = sorted(item for items in results.values() for item in items)
    assert taken == list(range(300))
    assert len(deque) == 0


def test_a_fork_while_another_thread_holds_the_writer_lock_does_not_wedge_the_child(tmp_path):
    cache = dc.Cache(str(tmp_path / 'c'), timeout=30)
    holding = threading.Event()

    def hold():
        with cache.transact():
            cache['held'] = 1
            holding.set()
            time.sleep(0.5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            # The parent's thread still holds the writer lock: the child waits for it like
            # any other process, then writes.
            cache['child'] = 2
            code = 0 if cache['held'] == 1 else 1
        finally:
            os._exit(code)
    holder.join()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert cache['child'] == 2
    cache['parent'] = 3


def test_a_child_dropping_its_inherited_handle_leaves_the_parent_working(tmp_path):
    directory = str(tmp_path / 'c')
    cache = dc.Cache(directory, timeout=5)
    cache['n'] = 100
    pid = os.fork()
    if pid == 0:
        try:
            cache.close()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    other = dc.Cache(directory, timeout=30)
    started = threading.Event()

    def compete():
        started.wait(10)
        other.incr('n')

    t = threading.Thread(target=compete)
    t.start()
    with cache.transact():
        value = cache['n']
        started.set()
        time.sleep(0.3)
        cache['n'] = value + 1
    t.join()
    assert cache['n'] == 102
