"""The test site's pages."""

from django.contrib.auth.views import LoginView
from django.urls import path

from . import views

urlpatterns = [
    path('counted/', views.counted, name='counted'),
    path('fragment/', views.fragment, name='fragment'),
    path('articles/', views.articles, name='articles'),
    path('login/', LoginView.as_view(template_name='djangoproject/login.html'), name='login'),
    path('whoami/', views.whoami, name='whoami'),
    path('async/', views.async_greeting, name='async-greeting'),
]
