"""Views of the test site. ``COUNTS`` counts, per process, how often each piece of work
really ran (rather than coming from a cache)."""

import collections
import os

from django.contrib.auth.decorators import login_required
from django.core.cache import cache, caches
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import cache_page

COUNTS = collections.Counter()


@cache_page(60 * 15, cache='default')
def counted(request):
    """A page computed once and then served from the ``default`` cache."""
    COUNTS['counted'] += 1
    return HttpResponse(
        'computed by process %d, run %d' % (os.getpid(), COUNTS['counted']),
        content_type='text/plain',
    )


def _render_sidebar():
    COUNTS['sidebar'] += 1
    return COUNTS['sidebar']


def fragment(request):
    """A page whose sidebar is a ``{% cache %}`` fragment, varying on ``?group=``."""
    context = {'group': request.GET.get('group', 'all'), 'render_sidebar': _render_sidebar}
    return render(request, 'djangoproject/fragment.html', context)


@caches['database'].memoize(name='published-titles', timeout=600, tag='articles')
def published_titles(section):
    """Stands for an expensive query, memoized in the ``database`` cache and tagged."""
    COUNTS['query'] += 1
    return ['%s article %d' % (section, number) for number in range(3)]


def articles(request):
    titles = published_titles(request.GET.get('section', 'news'))
    return HttpResponse('\n'.join(titles), content_type='text/plain')


@login_required
def whoami(request):
    return HttpResponse(request.user.get_username(), content_type='text/plain')


async def async_greeting(request):
    """An async view: its cache calls are awaited, without a thread per call for reads."""
    greeting = await cache.aget('greeting')
    if greeting is None:
        COUNTS['greeting'] += 1
        greeting = 'hello from the cache'
        await cache.aset('greeting', greeting, timeout=60)
    visits = await cache.aincr('greeting-visits', default=0)
    return HttpResponse('%s, visit %d' % (greeting, visits), content_type='text/plain')
