"""Django settings for running python-diskcache's own tests against this package."""

SECRET_KEY = 'ci-only-not-a-secret'
ALLOWED_HOSTS = ['testserver']
INSTALLED_APPS = ['tests']
DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': ':memory:'}}
USE_TZ = True
