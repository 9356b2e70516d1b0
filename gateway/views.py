from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from core.errors import invalid_url


@csrf_exempt
async def unknown_api_route(request: HttpRequest) -> HttpResponse:
    return invalid_url(request.method, request.path).response()
