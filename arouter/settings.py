"""ARouter settings: every knob is an environment variable, read through typed helpers.

A bad value stops the process at start-up with a message naming the variable, rather than
surfacing later as a confusing runtime error.
"""

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_path(name: str, default: Path) -> Path:
    raw = os.environ.get(name)
    return Path(raw).expanduser().resolve() if raw else default


def persistent_secret(name: str, data_dir: Path) -> str:
    """Read a secret from the environment, or from a file made once in the data folder.

    A fresh checkout then works with no configuration, and the secret survives restarts
    (API key digests depend on the pepper staying the same).
    """
    if value := os.environ.get(name):
        return value
    path = data_dir / name.lower()
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


DATA_DIR = env_path("AROUTER_DATA_DIR", BASE_DIR / "data")
SECRET_KEY = persistent_secret("SECRET_KEY", DATA_DIR)
# Peppers API key digests. Separate from SECRET_KEY so rotating one does not void every key.
AROUTER_KEY_PEPPER = persistent_secret("AROUTER_KEY_PEPPER", DATA_DIR)
# Encrypts teams' upstream provider keys at rest; its own secret, so rotating others keeps them.
AROUTER_CREDENTIALS_KEY = persistent_secret("AROUTER_CREDENTIALS_KEY", DATA_DIR)
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "ninja",  # serves /v1/docs assets locally (offline), not from a CDN
    "accounts",
    "gateway",
    "usage",
    "dashboard",
    "playground",
    "credentials",
    "quotas",
]

MIDDLEWARE = [
    "gateway.middleware.RequestIdMiddleware",
    # Runs BROWSER_MIDDLEWARE for pages only; /v1 requests skip it (see arouter/middleware.py).
    "arouter.middleware.BrowserMiddleware",
]
BROWSER_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Outside the rest, so error pages and static files carry the policy too.
    "core.security_headers.content_security_policy",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# The admin looks for these in MIDDLEWARE; they run from BROWSER_MIDDLEWARE instead.
SILENCED_SYSTEM_CHECKS = ["admin.E408", "admin.E409", "admin.E410"]

ROOT_URLCONF = "arouter.urls"
ASGI_APPLICATION = "arouter.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    import dj_database_url

    try:
        DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a usable database URL: {exc}") from None
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # A pooled connection is checked as it is handed out, so after a database restart
        # the first request gets a live connection rather than one the server killed.
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
        # Under ASGI, Django's persistent connections don't fit; psycopg's pool does.
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": env_int("DATABASE_POOL_SIZE", 10, minimum=1),
            # How long a request waits for a connection before it is a 503 (database down).
            "timeout": env_float("DATABASE_POOL_TIMEOUT", 3, minimum=0.1),
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "arouter.sqlite3",
            "OPTIONS": {
                # WAL lets readers proceed while the usage ledger writes; IMMEDIATE avoids
                # "database is locked" upgrades under concurrent writers.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            # A file, not memory, so the live server's threads share the test database.
            "TEST": {"NAME": DATA_DIR / "test.sqlite3"},
        }
    }

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 reads with a 5 s socket timeout by default, the same 5 s that
            # channels_redis blocks waiting for a message: idle consumers then crash with
            # TimeoutError. No socket timeout; channels_redis bounds its own waits.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}]},
        }
    }
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Pages: cookies scripts cannot read, sent on top-level navigation only; set
# AROUTER_SECURE_COOKIES=1 behind HTTPS so they are never sent in clear.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("AROUTER_SECURE_COOKIES", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Pages (and /v1/docs) run only what /static/ serves: no inline script or style. The
# playground plays blob: audio and opens its socket to this host ('self' covers ws:/wss:
# to it); Swagger UI's stylesheet draws its icons as data: images.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
# Failed log-ins allowed per username and address in 15 minutes before a pause.
AROUTER_LOGIN_ATTEMPTS = env_int("AROUTER_LOGIN_ATTEMPTS", 5, minimum=1)
# Invitations are printed to the console unless a mail backend is configured.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "arouter@localhost")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Keys and tokens never reach a log: every handler's records pass through this filter.
    "filters": {"redact_secrets": {"()": "core.log_redaction.RedactSecrets"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["redact_secrets"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO").upper()},
    # httpx logs every upstream request at INFO, upstream URLs included.
    "loggers": {
        # uvicorn's own messages (errors in the ASGI app among them) are filtered too.
        # On the logger too, as uvicorn may install its own handlers after this config.
        # Not its parent "uvicorn": configuring it would reset "uvicorn.access" (dictConfig
        # re-enables propagation of configured loggers' children), undoing --no-access-log.
        "uvicorn.error": {
            "handlers": ["console"],
            "filters": ["redact_secrets"],
            "level": "INFO",
            "propagate": False,
        },
        "httpx": {"level": "WARNING"},
        # A gateway answers many 4xx on purpose (bad keys, bad input); log only real errors.
        "django.request": {"level": "ERROR"},
    },
}

# --- Gateway ---------------------------------------------------------------------------
# The model catalog: which ids exist, what they cost and which provider serves them.
AROUTER_CATALOG = env_path("AROUTER_CATALOG", BASE_DIR / "gateway" / "catalog.toml")
# Largest accepted audio upload, in bytes (OpenAI's limit is 25 MB and answers 413 past it).
AROUTER_MAX_UPLOAD_BYTES = env_int("AROUTER_MAX_UPLOAD_MB", 25, minimum=1) * 1024 * 1024
# Longest audio decoded from an upload; decoding stops there (a tiny file can claim hours).
AROUTER_MAX_AUDIO_SECONDS = env_float("AROUTER_MAX_AUDIO_SECONDS", 3600, minimum=1)
# Uploaded audio is not kept after its request; name a folder here to keep a copy of each.
_keep_uploads = env_str("AROUTER_KEEP_UPLOADS_DIR")
AROUTER_KEEP_UPLOADS_DIR = Path(_keep_uploads).expanduser().resolve() if _keep_uploads else None
# Request bodies and uploads above this size spill to a temporary file instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
# JSON bodies carry base64 audio for chat; allow them to be as large as an upload.
DATA_UPLOAD_MAX_MEMORY_SIZE = AROUTER_MAX_UPLOAD_BYTES * 4 // 3 + 1024 * 1024
# Where assembled model weights are cached (whisper base is shipped in two parts).
AROUTER_CACHE_DIR = env_path("AROUTER_CACHE_DIR", DATA_DIR / "models")
# How many inference jobs may run at once per engine, per process.
AROUTER_ENGINE_CONCURRENCY = env_int("AROUTER_ENGINE_CONCURRENCY", 2, minimum=1)
# Unload an idle local model after this many seconds (0 keeps models loaded forever).
AROUTER_MODEL_IDLE_TTL = env_float("AROUTER_MODEL_IDLE_TTL", 0, minimum=0)
# Load these catalog models at start-up instead of on first use (comma separated ids).
AROUTER_PRELOAD = env_list("AROUTER_PRELOAD", [])
# Extra Piper voices (.onnx + .onnx.json pairs) are discovered in this folder.
AROUTER_VOICES_DIR = env_path("AROUTER_VOICES_DIR", DATA_DIR / "voices")
# Chat replies stop after this many tokens unless the request sets max_completion_tokens.
AROUTER_CHAT_MAX_TOKENS = env_int("AROUTER_CHAT_MAX_TOKENS", 256, minimum=1)
# Spoken chat replies (message.audio) can be referenced by id for this many seconds.
AROUTER_CHAT_AUDIO_TTL = env_int("AROUTER_CHAT_AUDIO_TTL", 3600, minimum=3600)
# API keys' last_used_at is written at most this often (seconds).
AROUTER_LAST_USED_RESOLUTION = 60
# Threads that keep database connections for the per-request key lookup and ledger row
# (0: use a fresh connection per request, as Django's sync_to_async does).
AROUTER_DB_THREADS = env_int("AROUTER_DB_THREADS", 2, minimum=0)
# A verified API key is trusted for this many seconds before it is read again. Changes
# made in this process (revoking) apply at once; other workers see them within this time.
AROUTER_KEY_CACHE_SECONDS = env_float("AROUTER_KEY_CACHE_SECONDS", 10, minimum=0)
