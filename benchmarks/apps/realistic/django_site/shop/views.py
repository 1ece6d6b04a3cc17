"""The same two pages as the Flask app: a template-rendered catalogue and its JSON."""

from django.http import JsonResponse
from django.shortcuts import render
from items import page


def catalogue(request):
    return render(request, "catalogue.html", page(request.GET.get("q", "")))


def api(request):
    return JsonResponse(page(request.GET.get("q", "")))
