"""Settings of the test site.

Three caches on DjangoCache, configured as python-diskcache's documentation shows
(different shard counts and eviction policies), cache-backed sessions on the
``sessions`` cache, and a SQLite database for the users. Every file lives under
``$DJANGOPROJECT_ROOT`` (a new temporary directory unless it is set), so a second
process given the same root sees the same caches.
"""

import os
import tempfile

ROOT = os.environ.setdefault('DJANGOPROJECT_ROOT', tempfile.mkdtemp(prefix='djangoproject-'))

SECRET_KEY = os.environ.get('DJANGOPROJECT_SECRET_KEY', 'test-site-only-not-a-secret')
SECRET_KEY_FALLBACKS = [
    key for key in os.environ.get('DJANGOPROJECT_SECRET_KEY_FALLBACKS', '').split(',') if key
]
DEBUG = False
ALLOWED_HOSTS = ['testserver', 'localhost']

INSTALLED_APPS = [
    'django.contrib.auth',
    'django.contrib.contenttypes',
    'django.contrib.sessions',
    'djangoproject',
]
MIDDLEWARE = [
    'django.contrib.sessions.middleware.SessionMiddleware',
    'django.middleware.common.CommonMiddleware',
    'django.middleware.csrf.CsrfViewMiddleware',
    'django.contrib.auth.middleware.AuthenticationMiddleware',
]
ROOT_URLCONF = 'djangoproject.urls'
TEMPLATES = [
    {
        'BACKEND': 'django.template.backends.django.DjangoTemplates',
        'APP_DIRS': True,
        'OPTIONS': {
            'context_processors': [
                'django.template.context_processors.request',
                'django.contrib.auth.context_processors.auth',
            ],
        },
    },
]
DATABASES = {
    'default': {
        'ENGINE': 'django.db.backends.sqlite3',
        'NAME': os.path.join(ROOT, 'db.sqlite3'),
    },
}
DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'
USE_TZ = True
LOGIN_URL = '/login/'
# Hashing test passwords with a slow hasher would only slow the tests down.
PASSWORD_HASHERS = ['django.contrib.auth.hashers.MD5PasswordHasher']

CACHES = {
    'default': {
        'BACKEND': 'diskcache.djangocache.DjangoCache',
        'LOCATION': os.path.join(ROOT, 'cache', 'default'),
        'TIMEOUT': 300,
        'SHARDS': 16,
        'DATABASE_TIMEOUT': 0.010,
        'OPTIONS': {
            'size_limit': 2**30,
            'eviction_policy': 'least-recently-used',
            'statistics': 1,
            'tag_index': 1,
        },
    },
    'sessions': {
        'BACKEND': 'diskcache.djangocache.DjangoCache',
        'LOCATION': os.path.join(ROOT, 'cache', 'sessions'),
        'SHARDS': 4,
        'OPTIONS': {
            'size_limit': 2**28,
            'eviction_policy': 'least-recently-stored',
        },
    },
    'database': {
        'BACKEND': 'diskcache.djangocache.DjangoCache',
        'LOCATION': os.path.join(ROOT, 'cache', 'database'),
        'SHARDS': 32,
        'OPTIONS': {
            'size_limit': 2**32,
            'eviction_policy': 'least-frequently-used',
            'statistics': 1,
            'tag_index': 1,
            'MAX_ENTRIES': 10000,
        },
    },
}

SESSION_ENGINE = 'django.contrib.sessions.backends.cache'
SESSION_CACHE_ALIAS = 'sessions'
