"""Every module's docstring examples run, and there are enough of them to matter."""

import doctest

import pytest

import diskcache
import diskcache.core
import diskcache.djangocache
import diskcache.fanout
import diskcache.persistent
import diskcache.recipes

MINIMUM = {
    diskcache: 4,
    diskcache.core: 80,
    diskcache.djangocache: 40,
    diskcache.fanout: 30,
    diskcache.persistent: 90,
    diskcache.recipes: 40,
}


@pytest.mark.parametrize('module', list(MINIMUM), ids=lambda m: m.__name__)
def test_module_examples_pass_and_are_counted(module):
    failed, attempted = doctest.testmod(module)
    assert failed == 0
    assert attempted >= MINIMUM[module], '%s has %d examples' % (module.__name__, attempted)
