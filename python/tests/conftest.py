"""Fixtures: a fresh cache in a temporary directory, and a private pickle key file."""

import os
import shutil
import subprocess
import tempfile

import pytest

# Every test process keeps its per-user pickle key under a temporary state directory,
# never in the real home directory.
_STATE = tempfile.mkdtemp(prefix='diskcache-tests-state-')
os.environ['XDG_STATE_HOME'] = _STATE
os.environ.pop('DISKCACHE_PICKLE_KEY', None)

import diskcache as dc  # noqa: E402

# Django, when installed, runs with the test site's settings (python/tests/djangoproject),
# whose caches and database live in a temporary directory of their own.
try:
    import django
except ImportError:
    django = None
else:
    _SITE_ROOT = tempfile.mkdtemp(prefix='diskcache-tests-site-')
    os.environ['DJANGOPROJECT_ROOT'] = _SITE_ROOT
    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'djangoproject.settings')
    django.setup()


class _RunsCode:
    """Unpickling this creates a file: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.fixture
def evil(tmp_path):
    """Makes objects whose unpickling would create a marker file; the test fails if
    one was unpickled."""
    marker = str(tmp_path / 'code-ran')
    yield lambda: _RunsCode(marker)
    assert not os.path.exists(marker), 'a planted pickle was loaded'


@pytest.fixture(scope='session')
def interop():
    """The crate's `interop` example (built by cargo): reads and writes cache
    directories with the Rust API."""
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
    cargo = shutil.which('cargo')
    assert cargo, 'cargo is needed for the cross-language tests'
    subprocess.run([cargo, 'build', '--quiet', '--example', 'interop'], cwd=root, check=True)
    target = os.environ.get('CARGO_TARGET_DIR', os.path.join(root, 'target'))
    return os.path.join(target, 'debug', 'examples', 'interop')


@pytest.fixture
def cache(tmp_path):
    with dc.Cache(str(tmp_path / 'cache')) as cache:
        yield cache


@pytest.fixture
def fanout(tmp_path):
    with dc.FanoutCache(str(tmp_path / 'fanout'), shards=4, timeout=1) as fanout:
        yield fanout


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_STATE, ignore_errors=True)
    if django is not None:
        shutil.rmtree(_SITE_ROOT, ignore_errors=True)
