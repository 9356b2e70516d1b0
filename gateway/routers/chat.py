"""POST /v1/chat/completions: text and audio in, text or spoken replies out, SSE streaming.

The body is validated by `gateway.chat.request` (errors name the exact param). Audio parts
are transcribed before any byte of the response leaves, so a bad clip is a clean 400 even
when streaming. Spoken replies are made sentence by sentence by the cascade provider.
"""

from django.http import HttpRequest, JsonResponse
from ninja import Router

from core.errors import OpenAIError, invalid_param
from gateway.catalog import ModelEntry, catalog
from gateway.chat.admission import admit_chat
from gateway.chat.completion import Completion
from gateway.chat.conversation import AssistantReply, prepare
from gateway.chat.relay import relay, relay_stream
from gateway.chat.request import AudioInput, ChatRequest, parse_chat_request
from gateway.lifecycle import MeteredCall
from gateway.providers import provider_for
from gateway.providers.base import ChatJob, ChatRelay, VoiceChat
from gateway.sse import sse_event

router = Router(tags=["chat"])
ENDPOINT = "/v1/chat/completions"


def check_capabilities(chat: ChatRequest, entry: ModelEntry, provider) -> None:
    """400s for what the model cannot do: hear audio, speak, or speak in that voice."""
    if not entry.accepts("audio"):
        for n, message in enumerate(chat.messages):
            for m, part in enumerate(message.parts):
                if isinstance(part, AudioInput):
                    raise invalid_param(
                        f"The model `{chat.model}` does not support audio input.",
                        param=f"messages[{n}].content[{m}].type",
                        code="unsupported_value",
                    )
    if chat.wants_audio:
        if not entry.produces("audio") or not isinstance(provider, VoiceChat | ChatRelay):
            raise invalid_param(
                f"The model `{chat.model}` does not support audio output "
                "(GET /v1/models?output_modalities=audio lists those that do).",
                param="modalities",
                code="unsupported_value",
            )
        voices = {} if relays(provider) else provider.voices()
        if voices and chat.audio.voice not in voices:
            raise invalid_param(
                f"Invalid value: '{chat.audio.voice}'. Supported values are: "
                + ", ".join(f"'{v}'" for v in voices)
                + ".",
                param="audio.voice",
                code="invalid_value",
            )


def relays(provider: object) -> bool:
    """An upstream hears and speaks itself: audio requests go to it whole."""
    return isinstance(provider, ChatRelay)


@router.post("/completions", summary="Create chat completion")
async def create_chat_completion(request: HttpRequest):
    chat = parse_chat_request(request.body)
    entry = catalog().resolve(chat.model, "chat")
    if entry.substitution is not None:
        chat.model = entry.id  # the answer names the successor that wrote it, as OpenAI does
    provider = provider_for(entry)
    check_capabilities(chat, entry, provider)
    call = MeteredCall.for_request(request, entry, ENDPOINT)
    async with call.running():
        # Input audio reserved at its duration; kept (AROUTER_KEEP_UPLOADS_DIR) once admitted.
        await admit_chat(call, chat, len(request.body))
        if chat.stream:
            call.open_row()
        if relays(provider) and (chat.has_audio_input or chat.wants_audio):
            return await relay_request(chat, chat.body, provider, call)
        messages, heard = await prepare(chat.messages, provider, call.api_key.team_id)
        job = ChatJob(
            messages=messages,
            max_tokens=chat.token_budget(),
            temperature=chat.temperature,
            top_p=chat.top_p,
            stop=chat.stop,
            seed=chat.seed,
        )
        turn = AssistantReply(
            entry=entry,
            provider=provider,
            job=job,
            heard=heard,
            voice=chat.audio.voice if chat.wants_audio else None,
        )
        completion = Completion(chat, turn, call)
        if chat.stream:
            return await call.streaming(
                completion.chunks(), "text/event-stream", on_error=stream_error
            )
        call.measure = completion.meter  # a client that leaves pays for what was made
        body = await completion.whole()
    return call.respond(JsonResponse(body))


async def relay_request(chat: ChatRequest, body: dict, provider, call: MeteredCall):
    """An upstream audio model hears and speaks itself: the body goes to it whole."""
    if chat.stream:
        return await call.streaming(
            relay_stream(chat, body, provider, call), "text/event-stream", on_error=stream_error
        )
    return call.respond(JsonResponse(await relay(chat, body, provider, call)))


def stream_error(error: OpenAIError) -> bytes:
    """OpenAI reports a failure after the headers went as an error event."""
    return sse_event(error.body())
