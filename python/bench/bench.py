"""Benchmark: this package against python-diskcache 5.6.3 (and the `diskcache-rs`
package from PyPI, when it installs), each in its own virtual environment since they all
import as `diskcache`.

    python python/bench/bench.py                 # from the repository root
    python python/bench/bench.py --quick         # smaller counts, for a smoke run

Workloads, run by every implementation on a fresh temporary directory:

* per-op latency of set, get and delete with 100 B and 1 KiB str and bytes values, a small
  dict and a small object (pickled), on 1,000 keys: median, p90 and p99;
* python-diskcache's `benchmark_core` mix (90% get, 9% set, 1% delete of byte-string keys
  `0`-`99` with values of 1-500 bytes) in 1 and 8 processes: throughput, and the ops lost
  (a set or delete that gave up on a timeout).

It prints a table of medians and ratios ("Nx": python-diskcache took N times as long).
The venvs live under target/py-bench/ and are reused.
"""

import argparse
import json
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
VENVS = os.path.join(ROOT, 'target', 'py-bench')


class Record:
    """A small object that pickles (not plain data)."""

    def __init__(self, num):
        self.num = num
        self.name = 'record-%d' % num


# --- the worker: runs inside one implementation's venv -------------------------------


def _values():
    return {
        'bytes 100 B': b'b' * 100,
        'str 100 B': 's' * 100,
        'bytes 1 KiB': b'b' * 1024,
        'str 1 KiB': 's' * 1024,
        'dict': {'user': 42, 'roles': ['admin', 'dev'], 'score': 1.5, 'active': True},
        'object': Record(7),
    }


def _percentiles(samples):
    samples.sort()
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] * 1e6  # noqa: E731
    return {'median': pick(0.5), 'p90': pick(0.9), 'p99': pick(0.99)}


def per_op(diskcache, ops):
    out = {}
    directory = tempfile.mkdtemp(prefix='bench-')
    try:
        cache = diskcache.Cache(directory)
        keys = ['key-%d' % n for n in range(1000)]
        for label, value in _values().items():
            for op in ('set', 'get', 'delete'):
                samples = []
                for n in range(ops):
                    key = keys[n % len(keys)]
                    if op == 'set':
                        start = time.perf_counter()
                        cache.set(key, value)
                    elif op == 'get':
                        start = time.perf_counter()
                        cache.get(key)
                    else:
                        if n % len(keys) == 0:
                            for k in keys:
                                cache.set(k, value)
                        start = time.perf_counter()
                        cache.delete(key)
                    samples.append(time.perf_counter() - start)
                out['%s %s' % (op, label)] = _percentiles(samples)
        cache.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return out


def _mix_worker(directory, seed, ops, queue):
    diskcache = _import_implementation()

    cache = diskcache.Cache(directory)
    rng = random.Random(seed)
    lost = 0
    start = time.perf_counter()
    for count in range(ops):
        key = str(rng.randrange(100)).encode()
        roll = rng.random()
        if roll < 0.9:
            cache.get(key)
        elif roll < 0.99:
            value = str(count).encode() * rng.randrange(1, 100)
            if cache.set(key, value) is False:
                lost += 1
        else:
            cache.delete(key)
    queue.put((time.perf_counter() - start, lost))


def mix(diskcache, procs, ops):
    directory = tempfile.mkdtemp(prefix='bench-mix-')
    try:
        cache = diskcache.Cache(directory)
        for n in range(100):
            cache.set(str(n).encode(), str(n).encode())
        cache.close()
        context = multiprocessing.get_context('spawn')
        queue = context.Queue()
        workers = [
            context.Process(target=_mix_worker, args=(directory, seed, ops, queue))
            for seed in range(procs)
        ]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        results = [queue.get() for _ in workers]
        for worker in workers:
            worker.join()
        wall = time.perf_counter() - started
        lost = sum(lost for _, lost in results)
        busiest = max(seconds for seconds, _ in results)
        return {'ops_per_s': procs * ops / busiest, 'lost': lost, 'wall': wall}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _import_implementation():
    """`diskcache`, or the PyPI diskcache-rs package's `diskcache_rs`."""
    try:
        import diskcache

        return diskcache
    except ImportError:
        import diskcache_rs

        return diskcache_rs


def worker_main(args):
    try:
        diskcache = _import_implementation()
    except ImportError as error:
        print(json.dumps({'skipped': 'import failed: %s' % error}))
        return
    if not hasattr(diskcache, 'Cache'):
        print(json.dumps({'skipped': 'its diskcache module has no Cache'}))
        return
    result = {
        'version': getattr(diskcache, '__version__', '?'),
        'module': os.path.dirname(diskcache.__file__),
        'per_op': per_op(diskcache, args.ops),
        'mix': {str(p): mix(diskcache, p, args.mix_ops) for p in (1, 8)},
    }
    print(json.dumps(result))


# --- the driver ------------------------------------------------------------------------


def venv_python(name, install, log):
    """The Python of a venv with `install` pip-installed; None if that fails."""
    path = os.path.join(VENVS, name)
    python = os.path.join(path, 'bin', 'python')
    marker = os.path.join(path, '.installed')
    if os.path.exists(marker):
        return python
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([sys.executable, '-m', 'venv', path], check=True)
    done = subprocess.run(
        [python, '-m', 'pip', 'install', '--quiet'] + install, stdout=log, stderr=log
    )
    if done.returncode != 0:
        return None
    with open(marker, 'w') as writer:
        writer.write(' '.join(install))
    return python


def run_worker(python, args):
    cmd = [python, os.path.abspath(__file__), '--worker', '--ops', str(args.ops), '--mix-ops', str(args.mix_ops)]
    env = dict(os.environ)
    state = tempfile.mkdtemp(prefix='bench-state-')
    env['XDG_STATE_HOME'] = state  # this package's pickle key, kept out of $HOME
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    finally:
        shutil.rmtree(state, ignore_errors=True)
    if out.returncode != 0:
        return {'skipped': 'the run failed: %s' % out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt_us(x):
    return '%.2f us' % x if x < 1000 else '%.2f ms' % (x / 1000)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--quick', action='store_true', help='smaller counts')
    parser.add_argument('--ops', type=int, default=None, help='ops per per-op row')
    parser.add_argument('--mix-ops', type=int, default=None, help='ops per process in the mix')
    parser.add_argument('--ours', default=os.path.join(ROOT, '.venv', 'bin', 'python'),
                        help="the Python that has this package (default ./.venv's)")
    args = parser.parse_args()
    args.ops = args.ops or (2000 if args.quick else 20000)
    args.mix_ops = args.mix_ops or (5000 if args.quick else 100000)
    if args.worker:
        worker_main(args)
        return

    os.makedirs(VENVS, exist_ok=True)
    with open(os.path.join(VENVS, 'pip.log'), 'a') as log:
        pythons = {
            'this package': args.ours,
            'python-diskcache 5.6.3': venv_python('upstream', ['diskcache==5.6.3'], log),
            'diskcache-rs (PyPI)': venv_python('diskcache-rs', ['diskcache-rs'], log),
        }
    results = {}
    for name, python in pythons.items():
        if python is None:
            results[name] = {'skipped': 'pip install failed (see target/py-bench/pip.log)'}
            continue
        print('running %s ...' % name, file=sys.stderr)
        results[name] = run_worker(python, args)

    ours, base = results['this package'], results['python-diskcache 5.6.3']
    other = results['diskcache-rs (PyPI)']
    for name, result in results.items():
        if 'skipped' in result:
            print('%s: skipped (%s)' % (name, result['skipped']))
    if 'skipped' in ours or 'skipped' in base:
        sys.exit(1)
    show_other = 'skipped' not in other
    head = '| workload | this package | python-diskcache 5.6.3 | ratio |'
    if show_other:
        head += ' diskcache-rs (PyPI) | ratio |'
    print()
    print(head)
    print('|' + '---|' * (head.count('|') - 1))
    for row in ours['per_op']:
        a, b = ours['per_op'][row]['median'], base['per_op'][row]['median']
        line = '| %s (median) | %s | %s | %.1fx |' % (row, fmt_us(a), fmt_us(b), b / a)
        if show_other:
            c = other['per_op'].get(row, {}).get('median')
            line += ' %s | %s |' % (fmt_us(c), '%.1fx' % (c / a)) if c else ' - | - |'
        print(line)
    for procs in ('1', '8'):
        a, b = ours['mix'][procs], base['mix'][procs]
        line = '| benchmark_core mix, %s process(es) | %.0f ops/s (lost %d) | %.0f ops/s (lost %d) | %.1fx |' % (
            procs, a['ops_per_s'], a['lost'], b['ops_per_s'], b['lost'], a['ops_per_s'] / b['ops_per_s'])
        if show_other:
            c = other['mix'][procs]
            line += ' %.0f ops/s (lost %d) | %.1fx |' % (c['ops_per_s'], c['lost'], a['ops_per_s'] / c['ops_per_s'])
        print(line)
    print()
    print('p90/p99 and raw numbers: target/py-bench/results.json')
    with open(os.path.join(VENVS, 'results.json'), 'w') as writer:
        json.dump(results, writer, indent=1)


if __name__ == '__main__':
    main()
