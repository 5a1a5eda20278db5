"""One settings object read from the environment; fails fast on missing or placeholder secrets in production."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that mean "nobody filled this in" (copied from .env.example or a tutorial).
PLACEHOLDERS = ("changeme", "change-me", "your-", "your_", "xxx", "<", "todo", "placeholder", "example")
# URLs that are documentation, not a deployment: RFC 2606 names and the `user:password@host` of samples.
PLACEHOLDER_HOSTS = ("host", "hostname", "example.com", "example.org", "example.net")
PLACEHOLDER_HOST_SUFFIXES = (".example", ".example.com", ".example.org", ".example.net", ".invalid")
PLACEHOLDER_PASSWORDS = ("password", "pass", "secret")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
# Legacy pod-based Pinecone environments are `<region>-<cloud>` (us-east-1-aws, eu-west1-gcp).
PINECONE_CLOUDS = ("aws", "gcp", "azure")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(RuntimeError):
    """A setting is missing or still a placeholder; the message names the variable (never its value)."""

    @property
    def message(self) -> str:  # what health checks and the CLI print instead of the class name
        return str(self)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    # Where we run: "production" turns on the secret checks (Vercel sets VERCEL_ENV).
    environment: Literal["development", "test", "production"] = "development"
    vercel_env: str | None = None

    # The deployment runbook's variables.
    database_url: str = ""
    # The direct (non-pooled) URL for migrations and pg_dump, under the names Vercel Postgres / Neon set.
    direct_database_url: str | None = Field(  # a *_url name: its password is scrubbed from logs like the others
        default=None, validation_alias=AliasChoices("DATABASE_URL_UNPOOLED", "POSTGRES_URL_NON_POOLING"))
    nextauth_url: str | None = None
    nextauth_secret: str | None = None
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    anthropic_api_key: str | None = None
    anthropic_base_url: str | None = None
    openai_compatible_base_url: str | None = None  # the `openai_compatible` provider (shared/llm/registry.py)
    openai_compatible_api_key: str | None = None
    openai_compatible_model: str | None = None
    redis_url: str | None = None
    upstash_redis_rest_url: str | None = None
    upstash_redis_rest_token: str | None = None
    default_template_id: str = "default"
    pinecone_api_key: str | None = None
    pinecone_environment: str | None = None  # legacy `<region>-<cloud>`: sets the two below when they are unset
    pinecone_index: str = "dialog-engine"
    pinecone_host: str | None = None
    pinecone_cloud: str = "aws"          # serverless spec for `pinecone create-index`
    pinecone_region: str = "us-east-1"
    firecrawl_api_key: str | None = None
    firecrawl_api_url: str | None = None
    firecrawl_webhook_secret: str | None = None
    crawl_timeout_s: float = Field(default=20.0, gt=0, le=120)  # the built-in fetcher waits this long per read

    # Ours.
    qstash_url: str | None = None
    qstash_token: str | None = None
    qstash_current_signing_key: str | None = None
    qstash_next_signing_key: str | None = None
    cron_secret: str | None = None
    public_url: str = "http://localhost:3000"
    vector_backend: Literal["pinecone", "pgvector", ""] = ""
    sentry_dsn: str | None = None
    sentry_traces_sample_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    slow_query_ms: float = 200.0  # statements slower than this show in `db slow-queries`
    db_pool_size: int = Field(default=10, ge=0, le=200, description=(
        "Database connections a process keeps for reuse and has open at most (0 = a fresh one per use)"))
    db_pool_idle_s: float = Field(default=30.0, gt=0, le=3600, description=(
        "A pooled connection unused this long is closed (a quiet instance holds no backend)"))
    db_pool_wait_s: float = Field(default=10.0, gt=0, le=120, description=(
        "How long a request waits for a pooled connection when all DB_POOL_SIZE are busy (then 503)"))
    auth_cache_s: float = Field(default=5.0, ge=0, le=60, description=(
        "API keys found valid are trusted this long per process without a query (0 = every request asks); "
        "a revoked key stops working within it everywhere, at once on the instance that revoked it"))
    # A running job's lease, renewed every third of it; a retry after it ran out runs the job again.
    job_lease_seconds: float = Field(default=30.0, ge=0.5, le=300.0)
    backup_bucket: str | None = None
    backup_prefix: str = "backups"
    backup_recipient: str | None = None      # age public key(s) backups are encrypted to (age1..., comma-separated)
    backup_identity: str | None = None       # the age private key that reads them: restore/verify only
    backup_identity_file: str | None = None  # or a file holding it, as age-keygen writes it
    backup_s3_endpoint_url: str | None = None
    backup_pg_bin_dir: str | None = None  # folder with pg_dump/pg_restore 16 (default: pgserver's, then PATH)
    aws_region: str = "us-east-1"

    # Models and retrieval.
    embedding_model: str = "text-embedding-3-small"
    embedding_base_url: str | None = None  # defaults to OPENAI_BASE_URL; any OpenAI-compatible embeddings API
    embedding_dimensions: int = Field(default=1536, ge=1, le=16_000, description=(
        "Vector size: OpenAI's `dimensions`, chunks.embedding's size, the Pinecone index's. 512 suits "
        "text-embedding-3-small (a third of the index and insert cost); changing it is `vectorize all --resize`"))
    embedding_query_prefix: str = Field(default="", max_length=100, description=(
        "Put before a question's text when it is embedded, for models trained with one (E5: 'query: ', "
        "nomic-embed: 'search_query: '); OpenAI's models need none"))
    embedding_document_prefix: str = Field(default="", max_length=100, description=(
        "Put before a chunk's text when it is embedded (E5: 'passage: '); changing it is `vectorize all`"))
    embedding_batch_inputs: int = Field(default=256, ge=1, le=2048, description=(
        "Texts per embeddings request while indexing; a page batch's requests run in parallel"))
    embedding_concurrency: int = Field(default=4, ge=1, le=32, description=(
        "Embeddings requests one indexing job has in flight at once"))
    ingest_pages_per_job: int = Field(default=100, ge=1, le=1000, description=(
        "Pages one ingest_pages job carries (fan-out); a job past INGEST_JOB_BUDGET_S hands the rest on"))
    ingest_wave_pages: int = Field(default=50, ge=1, le=1000, description=(
        "Pages a job fetches, embeds and writes together (one COPY)"))
    ingest_job_budget_s: float = Field(default=120.0, gt=0, description=(
        "An ingest_pages job starts no new wave after this long and queues the pages left as a new job; "
        "keep it under the jobs function's maxDuration (300 s) minus one wave's worst case"))
    ingest_bulk_pages: int = Field(default=1000, ge=1, description=(
        "A first sync with this many pages loads its vectors with pgvector's HNSW index set aside, then builds it"))
    index_build_memory_mb: int = Field(default=1024, ge=64, description=(
        "maintenance_work_mem for building the HNSW index (the graph should fit: ~1.2x the vectors' size)"))
    hybrid_vector_weight: float = Field(default=0.0, ge=0.0, le=1.0, description=(
        "Weight of vector ranks in hybrid search when keyword search has strong evidence (weak evidence: 1, "
        "as keyword ranks). 0 keeps the keyword order there; raise it only for an embedding model that "
        "bench/retrieval_quality.py shows beating keyword search on your pages"))
    llm_connect_timeout_s: float = 5.0
    llm_first_token_timeout_s: float = 20.0
    llm_total_timeout_s: float = 120.0
    embedding_query_timeout_s: float = Field(default=2.5, gt=0, description=(
        "All a chat turn waits for its query embedding (attempts included); then keyword retrieval"))
    chat_store_attempts: int = Field(default=3, ge=1, le=10, description=(
        "Tries to store a reply, on a fresh connection after the first; then done says store_failed"))
    redis_timeout_s: float = Field(default=1.0, gt=0, description="Per Redis call (Upstash REST or REDIS_URL)")
    redis_breaker_s: float = Field(default=3.0, ge=0, description=(
        "After a Redis call failed, calls fail at once for this long (0 = off), so an outage costs one timeout"))

    # Evaluations (README "Evaluations").
    eval_batch_size: int = Field(default=5, ge=1, le=50, description=(
        "Cases per eval_batch job: each is a chat turn, so a batch must finish well inside a function's time"))
    eval_case_attempts: int = Field(default=3, ge=1, le=10, description=(
        "Tries per case when no provider answers (the batch is retried); then the failure is the case's result"))
    eval_judge: str | None = Field(default=None, description=(
        "provider:model that grades answer support (e.g. openai:gpt-4o-mini); unset = lexical overlap, offline"))
    eval_gate_tolerance: float = Field(default=0.02, ge=0.0, le=1.0, description=(
        "How much worse a quality metric may be than the published version's before a gated publish is refused"))
    eval_alert_webhook_url: str | None = None  # re-sync runs whose metrics dropped are POSTed here

    # Limits.
    max_body_bytes: int = Field(default=1_000_000, description="Largest JSON body a route accepts (413 above)")
    max_upload_bytes: int = 4_000_000  # under Vercel's 4.5 MB request cap
    max_message_chars: int = 8_000
    max_request_messages: int = 200  # messages one OpenAI-style or useChat request may carry
    # Parsing uploaded and crawled files (PDF, Word, HTML) in a bounded child process: 413 / 422 past these.
    parse_max_decompressed_bytes: int = Field(default=64_000_000, ge=1)  # a .docx unpacked, a PDF's text
    parse_max_pages: int = Field(default=2_000, ge=1)
    parse_timeout_s: float = Field(default=20.0, gt=0)
    parse_max_memory_mb: int = Field(default=768, ge=64)
    # What the crawler may reach besides public hosts: "false" (production), "loopback" (127.0.0.1 / ::1 only,
    # what `make dev` and the tests use) or "true" (every private range too). Compare with ==, never truthiness.
    allow_private_hosts: Literal["false", "loopback", "true"] = "false"
    # Client IPs for limits: forwarded headers are trusted only where the platform sets them (Vercel sets
    # VERCEL=1); None = trust them exactly when VERCEL=1. Elsewhere the socket peer is the client.
    vercel: bool = False
    trust_forwarded_ip: bool | None = None

    # Rate limits and spend caps (0 = off); each assistant's `limits` may override the chat ones.
    rate_chat_per_key_per_minute: int = Field(default=60, ge=0)
    rate_chat_per_user_per_minute: int = Field(default=20, ge=0)
    rate_chat_per_ip_per_minute: int = Field(default=60, ge=0)  # anonymous widget visitors, per client IP
    rate_ingest_per_workspace_per_hour: int = Field(default=100, ge=0)
    rate_upload_per_workspace_per_hour: int = Field(default=50, ge=0)
    daily_token_budget: int = Field(default=1_000_000, ge=0, description="Tokens in + out per workspace per UTC day")
    auth_secret: str | None = None  # Auth.js v5 name for NEXTAUTH_SECRET; either one works
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"  # the dialog_engine loggers
    log_format: Literal["json", "text"] = "json"  # one JSON object a line (with request_id), or plain text

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format_name(cls, value: Any) -> Any:
        return str(value).strip().lower() or "json"

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_name(cls, value: Any) -> Any:
        return str(value).strip().upper() or "INFO"

    @model_validator(mode="after")
    def _pinecone_environment(self) -> Settings:
        """PINECONE_ENVIRONMENT (the old runbook's `eu-west-1-aws`) means cloud and region; an explicit
        PINECONE_CLOUD / PINECONE_REGION that says otherwise is a conflict, not a silent choice."""
        legacy = (self.pinecone_environment or "").strip().lower()
        if not legacy:
            return self
        region, _, cloud = legacy.rpartition("-")
        if cloud not in PINECONE_CLOUDS or not region:
            raise ValueError(f"PINECONE_ENVIRONMENT={legacy!r} is not <region>-<cloud> (e.g. eu-west-1-aws); "
                             "set PINECONE_CLOUD and PINECONE_REGION instead")
        for name, value in (("pinecone_cloud", cloud), ("pinecone_region", region)):
            if name in self.model_fields_set and getattr(self, name) != value:
                raise ValueError(f"PINECONE_ENVIRONMENT={legacy!r} says {name.upper()}={value!r} but "
                                 f"{name.upper()}={getattr(self, name)!r} is set: keep one of them")
        self.pinecone_cloud, self.pinecone_region = cloud, region
        return self

    @field_validator("allow_private_hosts", mode="before")
    @classmethod
    def _private_hosts_mode(cls, value: Any) -> Any:
        """true/1/yes/on and false/0/no/off/empty as for a boolean, or 'loopback'."""
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return "true"
        if text in ("false", "0", "no", "off", "", "none"):
            return "false"
        return text

    @property
    def is_production(self) -> bool:
        return self.environment == "production" or self.vercel_env == "production"

    @property
    def database_is_pooled(self) -> bool:
        """A transaction-mode pooler (pgbouncer, Neon/Vercel '-pooler' hosts) can't keep prepared statements."""
        url = self.database_url
        return "pgbouncer=true" in url or "-pooler" in url or ":6543" in url

    @property
    def session_database_url(self) -> str:
        """For migrations and backups (advisory locks, pg_dump need a real session): DATABASE_URL_UNPOOLED /
        POSTGRES_URL_NON_POOLING, else DATABASE_URL."""
        return self.direct_database_url or self.database_url

    @property
    def resolved_vector_backend(self) -> str:
        return self.vector_backend or ("pinecone" if self.pinecone_api_key else "pgvector")

    def check(self) -> Settings:
        """Raise SettingsError naming the first missing or placeholder variable that production needs."""
        problems = [f"{name.upper()} is not set" for name in ("database_url",) if not getattr(self, name)]
        if self.is_production:
            required = ["database_url", "qstash_token", "qstash_current_signing_key",
                        "qstash_next_signing_key", "cron_secret", "public_url"]
            if not self.redis_url:
                required += ["upstash_redis_rest_url", "upstash_redis_rest_token"]
            for name in required:
                value = getattr(self, name)
                if not value:
                    problems.append(f"{name.upper()} is not set")
            from shared.core.observability import secret_settings  # derived from names and the provider registry

            optional_secrets = [*secret_settings(), "backup_recipient", "direct_database_url", "nextauth_url",
                                "redis_url"]
            for name in dict.fromkeys(required + optional_secrets):
                value = getattr(self, name)
                if value and is_placeholder(str(value)):
                    problems.append(f"{name.upper()} still holds a placeholder value")
            if self.public_url and _host(self.public_url) in LOOPBACK_HOSTS:  # the default, or a copied dev value
                problems.append(f"PUBLIC_URL is {self.public_url}: set it to this deployment's own URL (QStash "
                                "delivers every job to PUBLIC_URL/api/jobs/<name>)")
            if self.allow_private_hosts != "false":  # would let a crawl reach the metadata service and the LAN
                problems.append(f"ALLOW_PRIVATE_HOSTS={self.allow_private_hosts} is not allowed in production "
                                "(unset it or set it to false)")
        if problems:
            raise SettingsError("Configuration error: " + "; ".join(problems)
                                + " (set it in the Vercel project's Environment Variables or export it in this shell; "
                                "next to a running `make dev` the CLI uses its local stack)")
        return self


def is_placeholder(value: str) -> bool:
    lowered = value.strip().lower()
    if any(lowered.startswith(p) or p in lowered for p in PLACEHOLDERS[:3]) or any(
            lowered.startswith(p) for p in PLACEHOLDERS[3:]):
        return True
    if "://" not in lowered:
        return False
    try:
        parts = urlsplit(lowered)
        host, password = parts.hostname or "", parts.password
    except ValueError:
        return False
    return (host in PLACEHOLDER_HOSTS or host.endswith(PLACEHOLDER_HOST_SUFFIXES)
            or password in PLACEHOLDER_PASSWORDS)


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests call get_settings.cache_clear() after changing the environment)."""
    try:
        settings = Settings()
    except ValidationError as exc:  # name the variable and the rule, never the value (it may be a secret)
        problems = [(f"{'.'.join(str(part) for part in error['loc']).upper()}: " if error["loc"] else "")
                    + error["msg"].removeprefix("Value error, ") for error in exc.errors()]
        raise SettingsError("Configuration error: " + "; ".join(problems)) from None
    return settings.check()
