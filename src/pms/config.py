"""Settings from the environment (PMS_* variables, plus DATABASE_URL and REDIS_URL)."""

from __future__ import annotations

from functools import cached_property

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PMS_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "PMS_DATABASE_URL"),
        description="PostgreSQL URL; unset means an embedded cluster under ./var/pgdata.",
    )
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "PMS_REDIS_URL"))
    host: str = Field(default="127.0.0.1", validation_alias=AliasChoices("HOST", "PMS_HOST"))
    port: int = Field(default=8000, validation_alias=AliasChoices("PORT", "PMS_PORT"))
    base_url: str | None = Field(
        default=None, description="Public base URL of the server (used in Bundle links and Location)."
    )
    data_dir: str = Field(default="var", description="Where the embedded database keeps its files.")
    # Sized for the requests one worker has in flight: an overflow connection is opened for the request
    # and closed after it (connect, type introspection and every prepared statement again), which cost
    # a quarter of the throughput of creates at 16 concurrent requests per worker with 10 + 10.
    db_pool_size: int = Field(default=20, description="Kept-open database connections per worker process.")
    db_max_overflow: int = Field(default=5, description="Extra connections per worker under bursts.")
    db_read_pool_size: int = Field(
        default=10, description="Connections per worker for reads by id and audit records (asyncpg pool)."
    )
    max_body_bytes: int = Field(default=16 * 1024 * 1024, description="Largest request body accepted (413).")
    default_page_size: int = 20
    max_page_size: int = 1000
    max_bundle_entries: int = 10_000
    search_registry_ttl: float = Field(
        default=5.0, description="Seconds between checks for custom SearchParameters applied by a reindex."
    )
    log_level: str = "info"

    # -- background work: the arq worker and appointment reminders (docs/reminders.md) -------------------
    queue_name: str = Field(
        default="pms:queue", description="arq queue; also namespaces the worker's heartbeat key in Redis."
    )
    clinic_name: str = "the clinic"
    public_url: str | None = Field(
        default=None,
        description="Public base of the web app for links in messages (default http://HOST:PORT).",
    )
    link_secret: str | None = Field(
        default=None, description="Key signing reminder links; default: generated once, kept in the database."
    )
    reminder_offsets: str = Field(
        default="48h,2h", description="Comma-separated: how long before an appointment to remind (m, h, d)."
    )
    reminder_max_attempts: int = Field(default=5, description="Tries before a delivery counts as failed.")
    reminder_retry_base: float = Field(default=60.0, description="Seconds before the first retry; then x4.")
    reminder_concurrency: int = Field(default=50, description="Messages in flight at once per worker.")
    reminder_connections: int = Field(default=10, description="Connections kept per channel (SMTP, SMS).")
    smtp_host: str | None = Field(default=None, description="Unset: no email reminders.")
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "PMS <no-reply@localhost>"
    smtp_tls: str = Field(default="starttls", description="starttls | tls (implicit) | none")
    smtp_timeout: float = 10.0
    sms_base_url: str | None = Field(
        default=None, description="Twilio-style API base, e.g. https://api.twilio.com; unset: no SMS."
    )
    sms_account_sid: str | None = None
    sms_auth_token: str | None = None
    sms_from: str | None = None
    sms_timeout: float = 10.0

    # -- authorization server (docs/security.md) ------------------------------------------------------
    auth_issuer: str | None = Field(
        default=None, description="Token issuer (`iss`); default: the public FHIR base URL."
    )
    access_token_lifetime: int = Field(default=15 * 60, description="Seconds; user (app launch) tokens.")
    backend_token_lifetime: int = Field(default=5 * 60, description="Seconds; client_credentials tokens.")
    refresh_token_lifetime: int = Field(
        default=30 * 24 * 3600, description="Seconds an offline_access refresh token stays usable."
    )
    auth_code_lifetime: int = Field(default=120, description="Seconds an authorization code is redeemable.")
    launch_lifetime: int = Field(default=3600, description="Seconds an EHR `launch` id stays valid.")
    session_idle_timeout: int = Field(
        default=15 * 60, description="Seconds of inactivity that end a sign-in session (automatic logoff)."
    )
    session_lifetime: int = Field(default=12 * 3600, description="Absolute sign-in session lifetime (s).")
    require_2fa_for_staff: bool = Field(
        default=True, description="Staff (every role but `patient`) must pass TOTP to sign in."
    )

    # -- the staff web app (frontend/, served at /) -----------------------------------------------------
    spa_client_id: str = Field(
        default="pms-staff-app", description="OAuth client id of the staff web app (registered at start-up)."
    )
    spa_redirect_uris: list[str] = Field(
        default_factory=list,
        description="Extra redirect URIs of the web app's client (JSON list), e.g. another dev server.",
    )
    spa_dir: str | None = Field(
        default=None, description="The built web app (index.html + assets/); default: frontend/dist."
    )

    # -- scheduling (docs/scheduling.md) ----------------------------------------------------------------
    clinic_timezone: str = Field(
        default="UTC",
        description="IANA zone of the clinic (e.g. Europe/London): working hours are wall-clock times there.",
    )
    slot_minutes: int = Field(
        default=10, ge=1, le=240, description="Slot length when a Schedule does not set one."
    )
    slot_horizon_days: int = Field(
        default=56, ge=1, le=731, description="How far ahead free Slots are materialised."
    )
    telehealth_url_template: str = Field(
        default="https://meet.jit.si/pms-{appointment_id}-{secret}",
        description="Video link of a telehealth visit; `{appointment_id}` and `{secret}` are filled in.",
    )
    self_booking_max_upcoming: int = Field(
        default=3, description="Future bookings a patient may hold at once."
    )
    self_booking_max_per_day: int = Field(
        default=5, description="Appointments a patient may create in 24 hours."
    )

    waitlist_hold_minutes: int = Field(
        default=120,
        ge=1,
        description="How long freed time is held for the waitlisted patient it was offered to.",
    )
    calendar_feed_lifetime: int = Field(
        default=180 * 24 * 3600, description="Seconds a practitioner's calendar feed link keeps working."
    )

    @property
    def max_token_lifetime(self) -> int:
        """How long a retired signing key must keep verifying (the longest-lived JWT it signed)."""
        return max(self.access_token_lifetime, self.backend_token_lifetime)

    @property
    def app_base_url(self) -> str:
        """Where people reach the web app (reminder links): PMS_PUBLIC_URL, else the FHIR base's parent."""
        if self.public_url:
            return self.public_url.rstrip("/")
        if self.base_url:
            return self.base_url.rstrip("/").removesuffix("/fhir")
        return f"http://{self.host}:{self.port}"

    @cached_property
    def async_database_url(self) -> str:
        """The configured URL in the form SQLAlchemy's asyncpg dialect expects."""
        url = self.database_url or ""
        for prefix in ("postgresql+asyncpg://", "postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix) :]
        return url


def get_settings() -> Settings:
    return Settings()
