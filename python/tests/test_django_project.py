"""The test site (python/tests/djangoproject) on DjangoCache, driven by Django's test
clients: cached pages (also served by a second process), cache-backed sessions, template
fragments and their eviction by tag, versioned keys, three independent caches, memoize,
and an async view under ASGI."""

import asyncio
import json
import os
import subprocess
import sys

import pytest

django = pytest.importorskip('django')

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.cache import cache, caches  # noqa: E402
from django.core.cache.utils import make_template_fragment_key  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import AsyncClient, Client  # noqa: E402

import diskcache as dc  # noqa: E402
from diskcache.djangocache import DjangoCache, fragment_tag  # noqa: E402
from djangoproject import views  # noqa: E402

TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope='module', autouse=True)
def site():
    call_command('migrate', verbosity=0, interactive=False)
    get_user_model().objects.create_user('ada', password='analytical-engine')
    yield
    get_user_model().objects.all().delete()


@pytest.fixture(autouse=True)
def empty_caches():
    for alias in ('default', 'sessions', 'database'):
        caches[alias].clear()
    views.COUNTS.clear()
    yield


def visit(path, session=None, **environ):
    """Requests ``path`` from a new process on the same site root (with ``environ`` added
    to its environment); its JSON report."""
    env = dict(os.environ, **environ)
    env['PYTHONPATH'] = TESTS + os.pathsep + env.get('PYTHONPATH', '')
    command = [sys.executable, '-m', 'djangoproject.visit', path]
    if session is not None:
        command.append(session)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_caches_are_diskcache_as_configured():
    default, sessions, database = (caches[a] for a in ('default', 'sessions', 'database'))
    assert all(isinstance(c, DjangoCache) for c in (default, sessions, database))
    assert [len(c._cache._shards) for c in (default, sessions, database)] == [16, 4, 32]
    assert default._cache.eviction_policy == 'least-recently-used'
    assert sessions._cache.eviction_policy == 'least-recently-stored'
    assert database._cache.eviction_policy == 'least-frequently-used'
    assert database._cache.reset('MAX_ENTRIES') == 10000  # unknown options are stored
    assert sorted(os.listdir(sessions.directory)) == ['000', '001', '002', '003']


def test_cache_page_computes_once_then_serves_from_the_cache():
    client = Client()
    first = client.get('/counted/')
    second = client.get('/counted/')
    assert first.status_code == second.status_code == 200
    assert views.COUNTS['counted'] == 1
    assert first.content == second.content
    assert first.content.decode() == 'computed by process %d, run 1' % os.getpid()
    assert 'max-age=900' in second['Cache-Control']


def test_a_second_process_serves_the_page_this_one_cached():
    assert Client().get('/counted/').status_code == 200
    report = visit('/counted/')
    assert report['pid'] != os.getpid()
    assert report['status'] == 200
    # The other process sent what this one computed, and never ran the view itself.
    assert report['body'] == 'computed by process %d, run 1' % os.getpid()
    assert report['counts'].get('counted', 0) == 0


def test_a_page_cached_by_a_second_process_is_served_here():
    report = visit('/counted/')
    assert report['counts']['counted'] == 1
    response = Client().get('/counted/')
    assert response.content.decode() == report['body']
    assert views.COUNTS['counted'] == 0


def test_a_rotated_secret_key_still_reads_cached_pages_while_it_is_a_fallback():
    from django.conf import settings

    first = Client().get('/counted/').content.decode()  # a pickled response, signed
    assert views.COUNTS['counted'] == 1
    rotated = visit(
        '/counted/',
        DJANGOPROJECT_SECRET_KEY='the-next-secret',
        DJANGOPROJECT_SECRET_KEY_FALLBACKS=settings.SECRET_KEY,
    )
    assert rotated['body'] == first and rotated['counts'].get('counted', 0) == 0
    # Once the old key is dropped, its entries are misses (never unpickled): recomputed.
    dropped = visit('/counted/', DJANGOPROJECT_SECRET_KEY='the-next-secret')
    assert dropped['counts']['counted'] == 1
    assert dropped['body'] == 'computed by process %d, run 1' % dropped['pid']


def log_in(client):
    response = client.post('/login/', {'username': 'ada', 'password': 'analytical-engine'})
    assert response.status_code == 302, response.content
    return client.cookies['sessionid'].value


def test_sessions_live_in_the_sessions_cache_and_survive_a_reopen():
    client = Client()
    assert client.get('/whoami/').status_code == 302  # not logged in yet
    session_key = log_in(client)
    assert client.get('/whoami/').content == b'ada'

    # The session is an entry of the sessions cache, and nowhere else.
    key = 'django.contrib.sessions.cache' + session_key
    stored = caches['sessions'].get(key)
    assert stored['_auth_user_id'] == str(get_user_model().objects.get(username='ada').pk)
    assert caches['default'].get(key) is None and caches['database'].get(key) is None

    # A new handle on the directory (nothing shared with this process's open ones)...
    settings = caches['sessions']
    reopened = dc.FanoutCache(settings.directory, shards=4)
    assert reopened.get(settings.make_key(key)) == stored
    reopened.close()
    # ...and a new process, with only the session cookie, knows who is logged in.
    report = visit('/whoami/', session_key)
    assert (report['status'], report['body']) == (200, 'ada')

    # Logging out removes the entry.
    client.logout()
    assert caches['sessions'].get(key) is None
    assert visit('/whoami/', session_key)['status'] == 302


def test_fragments_are_cached_per_vary_on_value_and_evicted_by_tag():
    client = Client()
    for _ in range(3):
        assert b'sidebar for staff, rendering 1' in client.get('/fragment/?group=staff').content
    assert b'sidebar for all, rendering 2' in client.get('/fragment/').content
    assert views.COUNTS['sidebar'] == 2

    # Django's own key for one variant reaches that one only...
    cache.delete(make_template_fragment_key('sidebar', ['all']))
    assert b'rendering 3' in client.get('/fragment/').content
    assert b'rendering 1' in client.get('/fragment/?group=staff').content

    # ...while the fragment's tag reaches every variant, and nothing else.
    cache.set('unrelated', 'kept')
    value, tag = cache.get(make_template_fragment_key('sidebar', ['staff']), tag=True)
    assert tag == fragment_tag('sidebar') and 'staff' in value
    assert cache.evict(fragment_tag('sidebar')) == 2
    assert b'rendering 4' in client.get('/fragment/?group=staff').content
    assert b'rendering 5' in client.get('/fragment/').content
    assert cache.get('unrelated') == 'kept'


def test_versioned_keys_and_three_independent_caches():
    cache.set('motd', 'version one', version=1)
    cache.set('motd', 'version two', version=2)
    assert cache.get('motd') == 'version one'  # VERSION defaults to 1
    assert cache.get('motd', version=2) == 'version two'
    assert cache.get('motd', version=3) is None
    cache.delete('motd', version=1)
    assert cache.get('motd') is None and cache.get('motd', version=2) == 'version two'

    for alias in ('default', 'sessions', 'database'):
        caches[alias].set('shared-name', alias)
    assert [caches[a].get('shared-name') for a in ('default', 'sessions', 'database')] == [
        'default',
        'sessions',
        'database',
    ]
    caches['database'].clear()
    assert caches['database'].get('shared-name') is None
    assert caches['sessions'].get('shared-name') == 'sessions'
    assert cache.get('shared-name') == 'default'
    assert len(set(caches[a].directory for a in ('default', 'sessions', 'database'))) == 3


def test_memoized_queries_in_the_database_cache_and_their_eviction_by_tag():
    client = Client()
    database = caches['database']
    database.stats(reset=True)
    for _ in range(3):
        assert client.get('/articles/?section=news').content.startswith(b'news article 0')
    assert client.get('/articles/?section=sport').status_code == 200
    assert views.COUNTS['query'] == 2
    hits, misses = database.stats()
    assert (hits, misses) == (2, 2)
    assert database.evict('articles') == 2
    client.get('/articles/?section=news')
    assert views.COUNTS['query'] == 3


def test_an_async_view_awaits_the_cache_under_asgi():
    async def three_visits():
        client = AsyncClient()
        return [await client.get('/async/') for _ in range(3)]

    responses = asyncio.run(three_visits())
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert [r.content.decode() for r in responses] == [
        'hello from the cache, visit %d' % n for n in (1, 2, 3)
    ]
    assert views.COUNTS['greeting'] == 1
    assert cache.get('greeting-visits') == 3


def test_close_after_each_request_keeps_the_cache_usable():
    client = Client()
    for _ in range(5):
        client.get('/counted/')  # Django closes every cache when each request finishes
    assert views.COUNTS['counted'] == 1
    assert cache.get('greeting') is None and cache.set('after', 1) and cache.get('after') == 1
