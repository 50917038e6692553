"""A one-file Django project: settings, views and URLs, served by get_wsgi_application().

Django's settings are process-wide; this module configures them on import
and must be the only Django project in the test process.
"""

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="only-for-tests",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
    ],
    INSTALLED_APPS=[],
    DATABASES={},
    USE_TZ=True,
    LOGGING_CONFIG=None,
)
django.setup()

from django.core.signals import request_finished  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import FileResponse, HttpResponse, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402

# How many responses Django saw closed (its request_finished signal).
finished = []
request_finished.connect(lambda sender, **kwargs: finished.append(sender), weak=False)


def index(request):
    return HttpResponse("hello from django, %s" % request.GET.get("name", "stranger"))


@csrf_exempt
def form(request):
    return JsonResponse({"method": request.method, "name": request.POST.get("name"),
                         "tags": request.POST.getlist("tag"), "path": request.path})


def protected(request):
    return HttpResponse("CSRF let this through")


def stream(request):
    count = int(request.GET.get("count", "3"))
    return StreamingHttpResponse((b"chunk %d\n" % number for number in range(count)),
                                 content_type="text/plain")


def file(request):
    return FileResponse(open(request.GET["path"], "rb"), content_type="application/octet-stream")


urlpatterns = [
    path("", index),
    path("form/", form),
    path("protected/", protected),
    path("stream/", stream),
    path("file/", file),
]

application = get_wsgi_application()
