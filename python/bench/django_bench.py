"""Django cache benchmark: python-diskcache's djangocache-benchmarks workload through
Django's cache API, on this package's DjangoCache, python-diskcache 5.6.3's DjangoCache,
Django's RedisCache (a real redis-server), Django's PyMemcacheCache (a real memcached),
FileBasedCache and LocMemCache (per process, for reference), in 1 and 8 processes.

    python python/bench/django_bench.py              # from the repository root
    python python/bench/django_bench.py --ops 20000  # fewer operations per process

Build this package for speed first (``maturin develop --release`` into ./.venv; see
run-tests.sh). redis-server and memcached come from the system (Debian:
``apt-get install redis-server memcached``); the script starts each on a free loopback
port, for the run only, and stops it at the end. python-diskcache 5.6.3 and the clients
(redis, pymemcache) live in venvs of their own under target/py-bench/, since two
packages import as ``diskcache``.

The workload, per process: keys ``str(randrange(1100)).encode()``, values
``str(count).encode() * randrange(1, 100)``; 90% get, 9% set, 1% delete; every key set
to itself beforehand; the first 1,000 operations are not timed; process N seeds its
random numbers with N. A get miss is a get that returned None; a set or delete miss is
one that returned False.

Prints, per backend, process count and operation: count, misses, median, p90, p99, max
and total; then the ratios to this package ("Nx": the other took N times as long), and
writes a plot (target/py-bench/django-bench.png, or --plot PATH) and the numbers
(target/py-bench/django-results.json). It also measures, for both DjangoCaches, what
surrounds the workload in a site: close() after each request and the next get, a new
instance per thread or request, and awaited gets (against Django's default wrapper).
"""

import argparse
import array
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
VENVS = os.path.join(ROOT, 'target', 'py-bench')
DJANGO = 'django>=5.2,<5.3'
ACTIONS = ('get', 'set', 'delete')
STATS = ('median', 'p90', 'p99', 'max')

OURS = 'diskcache-logstore'
BACKENDS = {
    # name: (venv, CACHES entry; {root}, {redis} and {memcached} filled in per run)
    OURS: ('ours', {'BACKEND': 'diskcache.DjangoCache', 'LOCATION': '{root}/cache'}),
    'python-diskcache 5.6.3': (
        'upstream',
        {'BACKEND': 'diskcache.DjangoCache', 'LOCATION': '{root}/cache'},
    ),
    'redis': (
        'clients',
        {'BACKEND': 'django.core.cache.backends.redis.RedisCache', 'LOCATION': '{redis}'},
    ),
    'memcached': (
        'clients',
        {
            'BACKEND': 'django.core.cache.backends.memcached.PyMemcacheCache',
            'LOCATION': '{memcached}',
        },
    ),
    'filebased': (
        'clients',
        {
            'BACKEND': 'django.core.cache.backends.filebased.FileBasedCache',
            'LOCATION': '{root}/filebased',
            'OPTIONS': {'MAX_ENTRIES': 1000, 'CULL_FREQUENCY': 10},
        },
    ),
    'locmem (per process)': (
        'clients',
        {
            'BACKEND': 'django.core.cache.backends.locmem.LocMemCache',
            'OPTIONS': {'MAX_ENTRIES': 1000, 'CULL_FREQUENCY': 10},
        },
    ),
}


# --- inside a backend's venv --------------------------------------------------------------


def _django_cache(entry):
    from django.conf import settings

    settings.configure(
        SECRET_KEY='django-bench-only',
        CACHES={'default': entry},
        USE_TZ=True,
    )
    import django

    django.setup()
    from django.core.cache import caches

    # The backend instance, as python-diskcache's benchmark takes it (the module-level
    # django.core.cache.cache proxy adds a look-up of about 2.5 us to every call, the
    # same for every backend).
    return caches['default']


def prepare_main(args):
    cache = _django_cache(json.loads(args.entry))
    cache.clear()
    for number in range(args.range):
        key = str(number).encode()
        cache.set(key, key)
    with contextlib.suppress(Exception):
        cache.close()


def worker_main(args):
    """Runs one process's share of the workload once told to go on stdin; writes the
    timings (seconds, as doubles) and the misses to files named after ``args.out``."""
    cache = _django_cache(json.loads(args.entry))
    cache.get(b'0')  # connect / open before the clock starts
    rng = random.Random(args.seed)
    timings = {action: array.array('d') for action in ACTIONS}
    misses = dict.fromkeys(ACTIONS, 0)
    clock = time.perf_counter
    print('ready', flush=True)
    sys.stdin.readline()
    for count in range(args.ops):
        key = str(rng.randrange(args.range)).encode()
        value = str(count).encode() * rng.randrange(1, 100)
        roll = rng.random()
        if roll < 0.9:
            action = 'get'
            start = clock()
            result = cache.get(key)
            end = clock()
            miss = result is None
        elif roll < 0.99:
            action = 'set'
            start = clock()
            result = cache.set(key, value)
            end = clock()
            miss = result is False
        else:
            action = 'delete'
            start = clock()
            result = cache.delete(key)
            end = clock()
            miss = result is False
        if count >= args.warmup:
            timings[action].append(end - start)
            misses[action] += miss
    with contextlib.suppress(Exception):
        cache.close()
    for action, samples in timings.items():
        with open('%s.%s' % (args.out, action), 'wb') as writer:
            samples.tofile(writer)
    with open(args.out + '.json', 'w') as writer:
        json.dump(misses, writer)


def extras_main(args):
    """Costs around the workload, for one DjangoCache (this package's or python-diskcache's,
    whichever this venv has): a request's close() and the next get; a new instance with
    an already used configuration (Django makes one per thread, and under ASGI per
    request); and awaited gets, ours against Django's default async wrapper."""
    import asyncio
    import statistics

    from django.core.cache.backends.base import BaseCache

    root = tempfile.mkdtemp(prefix='django-bench-extras-')
    try:
        entry = {
            'BACKEND': 'diskcache.DjangoCache',
            'LOCATION': os.path.join(root, 'cache'),
            'OPTIONS': {'eviction_policy': 'least-recently-used', 'statistics': 1},
        }
        cache = _django_cache(entry)
        from diskcache import DjangoCache

        for number in range(100):
            cache.set(number, b'v' * 100)
        clock = time.perf_counter

        def median_us(samples):
            return statistics.median(samples) * 1e6

        out = {}
        # A request: ten gets, then Django's close(); then the next request's first get.
        closes, firsts = [], []
        for request in range(2000):
            for number in range(10):
                cache.get(number)
            start = clock()
            cache.close()
            middle = clock()
            cache.get(request % 100)
            end = clock()
            closes.append(middle - start)
            firsts.append(end - middle)
        out['close() after a request'] = median_us(closes)
        out['first get after close()'] = median_us(firsts)
        params = {'OPTIONS': entry['OPTIONS']}
        news = []
        for _ in range(200):
            start = clock()
            DjangoCache(entry['LOCATION'], params)
            news.append(clock() - start)
        out['new instance, configuration in use'] = median_us(news)
        reopened = []
        for _ in range(10):
            # The first instance in a new process: nothing of this cache is open there.
            done = subprocess.run(
                [sys.executable, os.path.abspath(__file__), '--open-worker',
                 '--entry', json.dumps(entry)],
                capture_output=True, text=True, check=True)
            reopened.append(float(done.stdout.strip().splitlines()[-1]))
        out['first instance in a process (opens the 8 shards)'] = median_us(reopened)
        created = []
        for number in range(10):
            start = clock()
            DjangoCache(os.path.join(root, 'new-%d' % number), params)
            created.append(clock() - start)
        out['a new cache directory (creates the 8 shards)'] = median_us(created)

        async def timed(get, count=2000):
            samples = []
            for number in range(count):
                start = clock()
                await get(number % 100)
                samples.append(clock() - start)
            return median_us(samples)

        async def concurrent(get, count=2000):
            start = clock()
            await asyncio.gather(*(get(number % 100) for number in range(count)))
            return (clock() - start) / count * 1e6

        async def awaits():
            django_default = lambda key: BaseCache.aget(cache, key)  # noqa: E731
            results = {
                'await aget() (this backend)': await timed(cache.aget),
                "await aget() (Django's default: one shared thread)": await timed(django_default),
                'await aset() (this backend)': await timed(lambda key: cache.aset(key, b'w' * 100)),
                '2000 concurrent aget(), per call (this backend)': await concurrent(cache.aget),
                "2000 concurrent aget(), per call (Django's default)": await concurrent(django_default),
            }
            return results

        out.update(asyncio.run(awaits()))
        print(json.dumps(out))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def open_main(args):
    """Prints how long the first DjangoCache instance in this process takes to make."""
    entry = json.loads(args.entry)
    from django.conf import settings

    settings.configure(SECRET_KEY='django-bench-only', USE_TZ=True)
    import django

    django.setup()
    from diskcache import DjangoCache

    params = {'OPTIONS': entry['OPTIONS']}
    start = time.perf_counter()
    DjangoCache(entry['LOCATION'], params)
    print(time.perf_counter() - start)


# --- servers ---------------------------------------------------------------------------------


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _wait_for_port(port, process, name, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError('%s exited with %s' % (name, process.returncode))
        with socket.socket() as sock:
            if sock.connect_ex(('127.0.0.1', port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError('%s did not listen on port %d' % (name, port))


@contextlib.contextmanager
def servers(work):
    """redis-server and memcached on free loopback ports, stopped on the way out:
    ``{'redis': url or None, 'memcached': address or None}``."""
    found, started = {}, []
    try:
        redis = shutil.which('redis-server')
        if redis:
            port = _free_port()
            process = subprocess.Popen(
                [redis, '--bind', '127.0.0.1', '--port', str(port), '--save', '',
                 '--appendonly', 'no', '--dir', work, '--protected-mode', 'yes'],
                stdout=subprocess.DEVNULL,
            )
            started.append(process)
            _wait_for_port(port, process, 'redis-server')
            found['redis'] = 'redis://127.0.0.1:%d' % port
        memcached = shutil.which('memcached')
        if memcached:
            port = _free_port()
            command = [memcached, '-l', '127.0.0.1', '-p', str(port), '-U', '0', '-m', '256']
            if os.geteuid() == 0:
                command += ['-u', 'nobody']
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
            started.append(process)
            _wait_for_port(port, process, 'memcached')
            found['memcached'] = '127.0.0.1:%d' % port
        yield found
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- the driver ------------------------------------------------------------------------------


def venv_python(name, install, log):
    """The Python of target/py-bench/<name> with ``install`` pip-installed; None if that
    fails."""
    path = os.path.join(VENVS, name)
    python = os.path.join(path, 'bin', 'python')
    marker = os.path.join(path, '.installed')
    if os.path.exists(marker):
        with open(marker) as reader:
            if reader.read() == ' '.join(install):
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


def _entry(template, root, addresses):
    text = json.dumps(template)
    text = text.replace('{root}', root)
    text = text.replace('{redis}', addresses.get('redis', ''))
    text = text.replace('{memcached}', addresses.get('memcached', ''))
    return text


def _percentile(ordered, q):
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_backend(python, template, addresses, procs, args, env):
    """One backend in ``procs`` processes: per action, the summary of every timed op."""
    root = tempfile.mkdtemp(prefix='django-bench-')
    try:
        entry = _entry(template, root, addresses)
        me = os.path.abspath(__file__)
        common = ['--entry', entry, '--range', str(args.range)]
        subprocess.run([python, me, '--prepare'] + common, check=True, env=env, cwd=root)
        workers = []
        for seed in range(procs):
            out = os.path.join(root, 'out-%d' % seed)
            command = [python, me, '--worker', '--seed', str(seed), '--ops', str(args.ops),
                       '--warmup', str(args.warmup), '--out', out] + common
            workers.append((out, subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                cwd=root)))
        try:
            for _, worker in workers:
                if worker.stdout.readline().strip() != 'ready':
                    raise RuntimeError('a worker failed to start')
            for _, worker in workers:  # all at once
                worker.stdin.write('go\n')
                worker.stdin.flush()
            for _, worker in workers:
                if worker.wait() != 0:
                    raise RuntimeError('a worker failed')
        except BaseException:
            for _, worker in workers:
                worker.kill()
                worker.wait()
            raise
        summary = {}
        for action in ACTIONS:
            samples = array.array('d')
            misses = 0
            for out, _ in workers:
                with open('%s.%s' % (out, action), 'rb') as reader:
                    samples.frombytes(reader.read())
                with open(out + '.json') as reader:
                    misses += json.load(reader)[action]
            ordered = sorted(samples)
            summary[action] = {
                'count': len(ordered),
                'miss': misses,
                'median': _percentile(ordered, 0.5) * 1e6,
                'p90': _percentile(ordered, 0.9) * 1e6,
                'p99': _percentile(ordered, 0.99) * 1e6,
                'max': ordered[-1] * 1e6,
                'total': sum(ordered),
            }
        return summary
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fmt_us(micros):
    if micros < 1000:
        return '%.1f us' % micros
    if micros < 1e6:
        return '%.2f ms' % (micros / 1e3)
    return '%.2f s' % (micros / 1e6)


def print_tables(results):
    results = {procs: results[procs] for procs in sorted(results, key=int)}
    for procs, by_backend in results.items():
        print('\n%s process(es), %s' % (procs, 'latency per operation'))
        print('| backend | op | count | miss | median | p90 | p99 | max | total |')
        print('|---|---|---|---|---|---|---|---|---|')
        for name, summary in by_backend.items():
            if 'skipped' in summary:
                print('| %s | skipped: %s | | | | | | | |' % (name, summary['skipped']))
                continue
            for action in ACTIONS:
                row = summary[action]
                print('| %s | %s | %d | %d | %s | %s | %s | %s | %.3f s |' % (
                    name, action, row['count'], row['miss'],
                    fmt_us(row['median']), fmt_us(row['p90']), fmt_us(row['p99']),
                    fmt_us(row['max']), row['total']))
    print('\nRatios: the other backend\'s time over %s\'s ("3.0x": it took three times as '
          'long; below 1: it was faster)' % OURS)
    print('| processes | backend | op | median | p90 | p99 | max | total |')
    print('|---|---|---|---|---|---|---|---|')
    for procs, by_backend in results.items():
        ours = by_backend.get(OURS, {})
        if 'skipped' in ours:
            continue
        for name, summary in by_backend.items():
            if name == OURS or 'skipped' in summary:
                continue
            for action in ACTIONS:
                cells = [
                    '%.1fx' % (summary[action][stat] / ours[action][stat]) for stat in STATS
                ]
                cells.append('%.1fx' % (summary[action]['total'] / ours[action]['total']))
                print('| %s | %s | %s | %s |' % (procs, name, action, ' | '.join(cells)))


def print_extras(extras):
    names = list(extras)
    if not names:
        return
    print('\nAround the workload (medians; LRU policy, statistics on, 8 shards):')
    print('| measure | ' + ' | '.join(names) + ' |')
    print('|---|' + '---|' * len(names))
    rows = []
    for result in extras.values():
        rows += [row for row in result if row not in rows and row != 'failed']
    for row in rows:
        cells = [fmt_us(extras[n][row]) if row in extras[n] else '-' for n in names]
        print('| %s | %s |' % (row, ' | '.join(cells)))


def check_targets(results):
    """The targets: faster than redis and memcached at every percentile for get and
    set; at least 5x faster than python-diskcache in total time per operation."""
    notes = []
    for procs, by_backend in results.items():
        ours = by_backend.get(OURS)
        if not ours or 'skipped' in ours:
            continue
        for name in ('redis', 'memcached'):
            other = by_backend.get(name)
            if not other or 'skipped' in other:
                notes.append('%s process(es): %s not measured' % (procs, name))
                continue
            for action in ('get', 'set'):
                for stat in STATS:
                    if ours[action][stat] >= other[action][stat]:
                        notes.append('%s process(es): %s %s %s is not faster than %s (%s vs %s)' % (
                            procs, action, stat, OURS, name, fmt_us(ours[action][stat]),
                            fmt_us(other[action][stat])))
        upstream = by_backend.get('python-diskcache 5.6.3')
        if upstream and 'skipped' not in upstream:
            for action in ACTIONS:
                ratio = upstream[action]['total'] / ours[action]['total']
                if ratio < 5:
                    notes.append('%s process(es): %s is %.1fx python-diskcache (target 5x)' % (
                        procs, action, ratio))
    print('\nTargets: ' + ('all met' if not notes else 'missed:'))
    for note in notes:
        print('- ' + note)


def plot(results, path, python):
    """A PNG of every backend's percentiles, one panel per operation and process count,
    drawn by ``python`` (a venv with matplotlib)."""
    script = r'''
import json, sys
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
results, path = json.load(open(sys.argv[1])), sys.argv[2]
stats = ['median', 'p90', 'p99', 'max']
procs_list = sorted(results, key=int)
fig, axes = plt.subplots(len(procs_list), 3, figsize=(15, 4.6 * len(procs_list)), squeeze=False)
for row, procs in enumerate(procs_list):
    names = [n for n, s in results[procs].items() if 'skipped' not in s]
    for col, action in enumerate(['get', 'set', 'delete']):
        ax = axes[row][col]
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            values = [results[procs][name][action][s] for s in stats]
            ax.bar([x + i * width for x in range(len(stats))], values, width, label=name)
        ax.set_yscale('log')
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(stats))])
        ax.set_xticklabels(stats)
        ax.set_title('%s, %s process(es)' % (action, procs))
        ax.set_ylabel('microseconds (log scale)')
        ax.grid(axis='y', which='major', alpha=0.3)
axes[0][0].legend(fontsize=8)
fig.suptitle('Django cache API latency: djangocache-benchmarks workload (lower is better)')
fig.tight_layout()
fig.savefig(path, dpi=80)
'''
    data = os.path.join(VENVS, 'django-results.json')
    done = subprocess.run([python, '-c', script, data, path], capture_output=True, text=True)
    if done.returncode != 0:
        print('plot failed: %s' % done.stderr.strip().splitlines()[-1:], file=sys.stderr)
    else:
        print('\nplot: %s' % path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    for hidden in ('--worker', '--prepare', '--extras-worker', '--open-worker'):
        parser.add_argument(hidden, action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--entry', help=argparse.SUPPRESS)
    parser.add_argument('--seed', type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument('--out', help=argparse.SUPPRESS)
    parser.add_argument('--ops', type=int, default=100000, help='operations per process')
    parser.add_argument('--range', type=int, default=1100, help='number of keys')
    parser.add_argument('--warmup', type=int, default=1000, help='untimed first operations')
    parser.add_argument('--procs', default='1,8',
                        help="process counts, comma-separated ('': the measures around the "
                             "workload only)")
    parser.add_argument('--only', default='',
                        help='backends to run, comma-separated (the results of the last run '
                             'are kept for the others)')
    parser.add_argument('--ours', default=os.path.join(ROOT, '.venv', 'bin', 'python'),
                        help="the Python that has this package (default ./.venv's)")
    parser.add_argument('--plot', default=os.path.join(VENVS, 'django-bench.png'))
    args = parser.parse_args()
    if args.prepare:
        return prepare_main(args)
    if args.worker:
        return worker_main(args)
    if args.extras_worker:
        return extras_main(args)
    if args.open_worker:
        return open_main(args)

    os.makedirs(VENVS, exist_ok=True)
    with open(os.path.join(VENVS, 'pip.log'), 'a') as log:
        pythons = {
            'ours': args.ours,
            'upstream': venv_python('django-upstream', ['diskcache==5.6.3', DJANGO], log),
            'clients': venv_python(
                'django-clients', [DJANGO, 'redis', 'pymemcache', 'matplotlib'], log),
        }
    env = dict(os.environ)
    state = tempfile.mkdtemp(prefix='django-bench-state-')
    env['XDG_STATE_HOME'] = state  # this package's per-user pickle key, out of $HOME
    env.pop('DJANGO_SETTINGS_MODULE', None)
    chosen = [n for n in BACKENDS if not args.only or n in args.only.split(',')]
    extras = {}
    for name, venv in ((OURS, 'ours'), ('python-diskcache 5.6.3', 'upstream')):
        if pythons[venv] and name in chosen:
            done = subprocess.run(
                [pythons[venv], os.path.abspath(__file__), '--extras-worker'],
                capture_output=True, text=True, env=env)
            if done.returncode == 0:
                extras[name] = json.loads(done.stdout.strip().splitlines()[-1])
            else:
                extras[name] = {'failed': done.stderr.strip().splitlines()[-1:]}
    results = {}
    work = tempfile.mkdtemp(prefix='django-bench-servers-')
    try:
        with servers(work) as addresses:
            for procs in [int(p) for p in args.procs.split(',') if p]:
                results[str(procs)] = by_backend = {}
                for name in chosen:
                    venv, template = BACKENDS[name]
                    python = pythons[venv]
                    if python is None:
                        by_backend[name] = {'skipped': 'pip install failed (target/py-bench/pip.log)'}
                        continue
                    if name in ('redis', 'memcached') and name not in addresses:
                        by_backend[name] = {'skipped': 'no %s on PATH' % name}
                        continue
                    print('%s, %d process(es) ...' % (name, procs), file=sys.stderr, flush=True)
                    try:
                        by_backend[name] = run_backend(python, template, addresses, procs, args, env)
                    except (RuntimeError, subprocess.CalledProcessError) as error:
                        by_backend[name] = {'skipped': str(error)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    saved = os.path.join(VENVS, 'django-results.json')
    saved_extras = os.path.join(VENVS, 'django-extras.json')
    if args.only and os.path.exists(saved):
        # A partial run updates the last full one: the other backends keep their numbers.
        with open(saved) as reader:
            previous = json.load(reader)
        for procs, by_backend in results.items():
            previous.setdefault(procs, {}).update(by_backend)
        results = previous
        if os.path.exists(saved_extras):
            with open(saved_extras) as reader:
                extras = dict(json.load(reader), **extras)
    with open(saved, 'w') as writer:
        json.dump(results, writer, indent=1)
    with open(saved_extras, 'w') as writer:
        json.dump(extras, writer, indent=1)
    print('ops per process %d, keys %d, warm-up %d; Python %s' % (
        args.ops, args.range, args.warmup, sys.version.split()[0]))
    print_tables(results)
    check_targets(results)
    print_extras(extras)
    if pythons['clients']:
        plot(results, args.plot, pythons['clients'])


if __name__ == '__main__':
    main()
