"""OpenID Connect sign-in for the dashboard: authorization code with PKCE, through Authlib.

radvigil is the relying party of the hospital's identity provider. It reads the provider's
discovery document from the configured issuer only (``ISSUER/.well-known/openid-configuration``),
sends the browser there with a fresh ``state``, ``nonce`` and PKCE (S256) challenge, exchanges the
returned code (with the verifier and the client secret) at the token endpoint, and accepts the ID
token only when its signature verifies against the provider's published keys and its issuer,
audience, expiry and nonce are right. The person's groups (``RADVIGIL_OIDC_GROUPS_CLAIM``) then
pick a radvigil role through ``RADVIGIL_OIDC_ROLE_MAP``; no matching group, no sign-in.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client, OAuthError
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from radvigil.config import Settings
from radvigil.errors import AuthError, ConfigError
from radvigil.store.schemas import Role

METADATA_SECONDS = 3600.0  # re-read discovery and keys hourly (key rotation), and on unknown kid
LEEWAY_SECONDS = 60  # clock skew allowed between radvigil and the identity provider
HTTP_TIMEOUT = 10.0


class NoRoleError(AuthError):
    """The person signed in at the identity provider, but no group of theirs maps to a role."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"You signed in as {name}, but none of your groups is mapped to a radvigil role. "
            "Ask the radvigil administrator to map one of your groups."
        )
        self.name = name


@dataclass(frozen=True)
class Identity:
    """Who signed in: the ID token's subject, a display name, their groups and mapped role."""

    subject: str
    name: str
    groups: tuple[str, ...]
    role: Role
    group: str


@dataclass(frozen=True)
class Authorization:
    """A sign-in to start: where to send the browser and what the callback must check."""

    url: str
    state: str
    nonce: str
    code_verifier: str


def role_for(groups: tuple[str, ...], role_map: Mapping[str, Role]) -> tuple[str, Role] | None:
    """The first ``(group, role)`` of the map whose group the person is in, else None."""
    for group, role in role_map.items():
        if group in groups:
            return group, role
    return None


class OidcClient:
    """The relying party: builds authorization URLs and turns callbacks into identities.

    ``clock`` (seconds since the epoch) is the seam tests use to check expiry without waiting;
    ``transport`` lets a test route HTTP elsewhere (the real tests use a real provider instead).
    """

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        redirect_url: str,
        *,
        scopes: str = "openid profile",
        groups_claim: str = "groups",
        role_map: Mapping[str, Role],
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id, self.client_secret = client_id, client_secret
        self.redirect_url, self.scopes = redirect_url, scopes
        self.groups_claim, self.role_map = groups_claim, dict(role_map)
        self.clock = clock
        self._transport = transport
        self._lock = threading.Lock()
        self._metadata: tuple[float, dict[str, Any]] | None = None
        self._keys: tuple[float, KeySet] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcClient | None:
        """The configured client, or None when RADVIGIL_OIDC_ISSUER is unset."""
        if settings.oidc_issuer is None:
            return None
        try:
            secret = settings.oidc_secret()
        except OSError as exc:
            raise ConfigError(f"cannot read RADVIGIL_OIDC_CLIENT_SECRET_FILE: {exc}") from exc
        return cls(
            settings.oidc_issuer,
            settings.oidc_client_id or "",
            secret or "",
            settings.oidc_redirect_url or "",
            scopes=settings.oidc_scopes,
            groups_claim=settings.oidc_groups_claim,
            role_map=settings.oidc_role_map,
        )

    def _http(self) -> OAuth2Client:
        return OAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret,
            scope=self.scopes,
            redirect_uri=self.redirect_url,
            code_challenge_method="S256",
            timeout=HTTP_TIMEOUT,
            transport=self._transport,
        )

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            with httpx.Client(timeout=HTTP_TIMEOUT, transport=self._transport) as client:
                response = client.get(url, headers={"Accept": "application/json"})
                response.raise_for_status()
                body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise AuthError(f"the identity provider's {what} could not be read: {exc}") from exc
        if not isinstance(body, dict):
            raise AuthError(f"the identity provider's {what} is not a JSON object")
        return body

    def metadata(self) -> dict[str, Any]:
        """The discovery document of the configured issuer (cached; its issuer must match)."""
        with self._lock:
            if self._metadata and time.monotonic() - self._metadata[0] < METADATA_SECONDS:
                return self._metadata[1]
        document = self._get_json(
            f"{self.issuer}/.well-known/openid-configuration", "discovery document"
        )
        if str(document.get("issuer", "")).rstrip("/") != self.issuer:
            raise AuthError(
                f"the discovery document names issuer {document.get('issuer')!r}, "
                f"not the configured {self.issuer!r}"
            )
        for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not document.get(field):
                raise AuthError(f"the identity provider's discovery document has no {field}")
        with self._lock:
            self._metadata = (time.monotonic(), document)
        return document

    def keys(self, *, refresh: bool = False) -> KeySet:
        """The provider's signing keys (cached; ``refresh`` re-reads them after a rotation)."""
        with self._lock:
            fresh = self._keys and time.monotonic() - self._keys[0] < METADATA_SECONDS
            if fresh and not refresh and self._keys:
                return self._keys[1]
        document = self._get_json(self.metadata()["jwks_uri"], "signing keys")
        try:
            key_set = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError) as exc:
            raise AuthError(f"the identity provider's signing keys are unusable: {exc}") from exc
        with self._lock:
            self._keys = (time.monotonic(), key_set)
        return key_set

    def authorization(self) -> Authorization:
        """A new sign-in: the provider URL with state, nonce and an S256 PKCE challenge."""
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = generate_token(64)
        with self._http() as client:
            url, _ = client.create_authorization_url(
                self.metadata()["authorization_endpoint"],
                state=state,
                code_verifier=verifier,
                nonce=nonce,
            )
        return Authorization(url, state, nonce, verifier)

    def finish(self, code: str, nonce: str, code_verifier: str) -> Identity:
        """Exchange the callback's code and validate the ID token; the identity, or AuthError.

        Raises:
            AuthError: the exchange failed or the ID token is invalid (bad signature, wrong
                issuer or audience, expired, wrong nonce, no subject).
            NoRoleError: valid, but none of the person's groups maps to a role.
        """
        try:
            with self._http() as client:
                token = client.fetch_token(
                    self.metadata()["token_endpoint"],
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                )
        except (OAuthError, httpx.HTTPError) as exc:
            raise AuthError(f"the identity provider refused the sign-in code: {exc}") from exc
        if "id_token" not in token:
            raise AuthError("the identity provider returned no ID token (is openid in scope?)")
        claims = self.validate(token["id_token"], nonce, token.get("access_token"))
        return self.identity(claims)

    def validate(
        self, id_token: str, nonce: str, access_token: str | None = None
    ) -> dict[str, Any]:
        """The claims of an ID token signed by the provider for this client, else AuthError."""
        algorithms = self.metadata().get("id_token_signing_alg_values_supported") or ["RS256"]
        try:
            try:
                decoded = jwt.decode(id_token, self.keys(), algorithms=algorithms)
            except JoseError:  # perhaps a rotated key: read the key set once more
                decoded = jwt.decode(id_token, self.keys(refresh=True), algorithms=algorithms)
            claims = CodeIDToken(
                decoded.claims,
                decoded.header,
                options={
                    "iss": {"essential": True, "value": self.issuer},
                    "aud": {"essential": True, "value": self.client_id},
                    "exp": {"essential": True},
                    "sub": {"essential": True},
                },
                params={"nonce": nonce, "client_id": self.client_id, "access_token": access_token},
            )
            claims.validate(now=int(self.clock()), leeway=LEEWAY_SECONDS)
        except JoseError as exc:
            raise AuthError(f"the identity provider's ID token was refused: {exc}") from exc
        except ValueError as exc:
            raise AuthError(f"the identity provider's ID token is malformed: {exc}") from exc
        return dict(claims)

    def identity(self, claims: Mapping[str, Any]) -> Identity:
        """Who the claims name and the role their groups map to (NoRoleError if none)."""
        raw = claims.get(self.groups_claim) or []
        groups = (raw,) if isinstance(raw, str) else tuple(str(g) for g in raw)
        name = str(claims.get("preferred_username") or claims["sub"])
        match = role_for(groups, self.role_map)
        if match is None:
            raise NoRoleError(name)
        return Identity(str(claims["sub"]), name, groups, match[1], match[0])
