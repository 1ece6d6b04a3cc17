from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("whoami", views.whoami),
    path("mesh", views.mesh),
]
