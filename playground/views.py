"""The playground pages: transcribe, synthesize and talk, billed to a key the user picks.

The page calls the real /v1 API from the browser. It holds a short-lived playground token
(accounts.ephemeral) for the chosen key instead of the key itself; the realtime socket
uses the session cookie plus `key_id`.
"""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts import ephemeral
from accounts.access import membership_or_404
from accounts.models import ApiKey
from gateway.catalog import catalog
from usage.models import UsageRecord

MAX_SPEECH_CHARACTERS = 4096


def _usable_keys(team_id: int):
    return ApiKey.objects.filter(team_id=team_id).usable().order_by("name")


@login_required
@require_GET
def playground(request: HttpRequest, team_id: int) -> HttpResponse:
    membership = membership_or_404(request.user, team_id)
    models = catalog()
    context = {
        "team": membership.team,
        "membership": membership,
        "keys": _usable_keys(team_id),
        "transcription_models": [m.id for m in models.filter(kind="transcription")],
        "speech_models": [m.id for m in models.filter(kind="speech")],
        "chat_models": [
            m.id
            for m in models.filter(kind="chat", input_modality="audio", output_modality="audio")
            if m.upstream is None  # the realtime socket serves local cascades only
        ],
        "max_speech_characters": MAX_SPEECH_CHARACTERS,
    }
    return render(request, "playground/playground.html", context)


@login_required
@require_POST
def session_token(request: HttpRequest, team_id: int) -> JsonResponse:
    """A playground token for one of the team's usable keys (CSRF-protected POST)."""
    membership_or_404(request.user, team_id)
    key_id = request.POST.get("key_id", "")
    api_key = _usable_keys(team_id).filter(pk=int(key_id)).first() if key_id.isdigit() else None
    if api_key is None:
        raise Http404
    return JsonResponse(
        {
            "token": ephemeral.mint(api_key, request.user.pk),
            "expires_at": int(timezone.now().timestamp()) + ephemeral.LIFETIME_SECONDS,
        }
    )


@login_required
@require_GET
def request_cost(request: HttpRequest, team_id: int, request_id: str) -> JsonResponse:
    """What one of the team's requests cost, once its ledger row is written."""
    membership_or_404(request.user, team_id)
    record = UsageRecord.objects.filter(team_id=team_id, request_id=request_id).first()
    if record is None:
        return JsonResponse({"error": "not recorded yet"}, status=404)
    return JsonResponse(
        {"request_id": record.request_id, "cost": str(record.cost), "status": record.status_code}
    )
