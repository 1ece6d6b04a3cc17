from django.urls import path

from . import views

urlpatterns = [
    path("", views.home),
    path("api/info", views.info),
    path("greet", views.greet),
]
