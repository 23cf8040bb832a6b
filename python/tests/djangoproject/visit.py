"""Requests one page of the test site from this process and prints what happened as
JSON: ``python -m djangoproject.visit PATH [SESSION_KEY]``.

Used by the tests to show that a second process, with the same caches on disk, serves
what the first one cached (and knows who is logged in)."""

import json
import os
import sys

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'djangoproject.settings')


def main(argv):
    import django

    django.setup()
    from django.conf import settings
    from django.test import Client

    from djangoproject.views import COUNTS

    client = Client()
    if len(argv) > 2:
        client.cookies[settings.SESSION_COOKIE_NAME] = argv[2]
    response = client.get(argv[1])
    print(json.dumps({
        'status': response.status_code,
        'body': response.content.decode('utf-8'),
        'counts': dict(COUNTS),
        'pid': os.getpid(),
    }))


if __name__ == '__main__':
    main(sys.argv)
