"""Sets Django up and creates the test model's table before the tests load."""

import os

import django

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tests.settings')
django.setup()

from django.db import connection  # noqa: E402

from .models import Poll  # noqa: E402

with connection.schema_editor() as editor:
    editor.create_model(Poll)


def _known_failures():
    path = os.path.join(os.path.dirname(__file__), 'known-failures.txt')
    reasons, reason = {}, []
    with open(path) as lines:
        for line in lines:
            line = line.strip()
            if line.startswith('#'):
                reason.append(line.lstrip('# '))
            elif line:
                reasons[line] = ' '.join(reason) or 'known failure'
                reason = []
            else:
                reason = []
    return reasons


def pytest_collection_modifyitems(config, items):
    import pytest

    known = _known_failures()
    for item in items:
        reason = known.get(item.nodeid)
        if reason:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
