"""Providers: who actually serves a catalog model.

The catalog names a provider by key; this table maps each key to the class that
implements it. Each class is a small module implementing one or more of the capability
interfaces in `gateway.providers.base`. Instances are made once per routed model and
shared by every alias of it, so one model copy serves all of them.
"""

import threading

from django.utils.module_loading import import_string

from gateway.catalog import ModelEntry

PROVIDERS: dict[str, str] = {
    "whisper": "gateway.providers.whisper.WhisperProvider",
    "piper": "gateway.providers.piper.PiperProvider",
    "llama": "gateway.providers.llama.LlamaProvider",
    "cascade": "gateway.providers.cascade.CascadeProvider",
    "upstream": "gateway.providers.upstream.UpstreamProvider",
    "azure": "gateway.providers.azure.AzureOpenAIProvider",
    "deepgram": "gateway.providers.deepgram.DeepgramProvider",
    "elevenlabs": "gateway.providers.elevenlabs.ElevenLabsProvider",
    "assemblyai": "gateway.providers.assemblyai.AssemblyAIProvider",
    "gemini": "gateway.providers.gemini.GeminiProvider",
}
# Providers that send requests to a service: their entry names an [upstreams.*] table
# (its base_url, its key, its retries and cooldown).
REMOTE_PROVIDERS = frozenset(
    {"upstream", "azure", "deepgram", "elevenlabs", "assemblyai", "gemini"}
)

_instances: dict[str, object] = {}
_lock = threading.Lock()


def provider_for(entry: ModelEntry):
    """The shared provider instance serving `entry` (built on first use)."""
    instance = _instances.get(entry.route_id)
    if instance is None:
        with _lock:
            instance = _instances.get(entry.route_id)
            if instance is None:
                from gateway.catalog import catalog

                base = catalog().models[entry.route_id]
                instance = import_string(PROVIDERS[base.provider])(base)
                if base.fallbacks:
                    from gateway.providers.fallback import with_fallbacks

                    instance = with_fallbacks(base, instance)
                _instances[entry.route_id] = instance
    return instance


def forget_providers() -> None:
    """Drop every provider instance (tests that swap the catalog use this)."""
    with _lock:
        _instances.clear()
