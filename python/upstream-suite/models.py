"""The model the upstream Django tests cache instances of."""

from django.db import models
from django.utils import timezone


def expensive_calculation():
    expensive_calculation.num_runs += 1
    return timezone.now()


expensive_calculation.num_runs = 0


class Poll(models.Model):
    question = models.CharField(max_length=200)
    pub_date = models.DateTimeField('date published', default=expensive_calculation)
