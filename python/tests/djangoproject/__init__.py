"""A small Django site that uses diskcache's DjangoCache for its caches and sessions.

The tests in ``python/tests/test_django_project.py`` drive it with Django's test clients;
``python -m djangoproject.visit PATH`` requests a page from a separate process.
"""
