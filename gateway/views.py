from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from gateway.errors import OpenAIError


@csrf_exempt
async def unknown_api_route(request: HttpRequest) -> HttpResponse:
    return OpenAIError(f"Invalid URL ({request.method} {request.path})", status=404).response()
