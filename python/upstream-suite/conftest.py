"""Sets Django up and creates the test model's table before the tests load."""

import os

import django

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tests.settings')
django.setup()

from django.db import connection  # noqa: E402

from .models import Poll  # noqa: E402

with connection.schema_editor() as editor:
    editor.create_model(Poll)
