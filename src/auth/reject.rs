//! `Reject`: every reason a request is refused, and all that follows from one (status,
//! `WWW-Authenticate` error code, metric label, log value, whether report-only routes let it
//! through). One variant = one metric label = one log value.

use crate::formats::normalize::BadTarget;

/// Why a request was refused. One variant = one metric label = one log value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reject {
    /// No route matches: default deny.
    NoRoute,
    /// The request target cannot be normalized safely.
    BadPath,
    /// Missing, repeated or malformed `Host`, or an absolute-form target naming another host.
    BadHost,
    /// Conflicting or malformed message framing (`Content-Length` / `Transfer-Encoding`).
    BadFraming,
    /// More than one `Authorization` header.
    MultipleAuthorization,
    /// Two different tokens on one request (two of the route's token sources, or one cookie
    /// name twice).
    MultipleTokens,
    /// Request head larger than `server.max_header_bytes`.
    HeadersTooLarge,
    /// A method with lowercase letters: `delete` would miss a `DELETE` rule, yet many
    /// frameworks upper-case it and run the DELETE.
    BadMethod,
    /// No bearer token on a route that needs one.
    MissingToken,
    TokenTooLarge,
    /// Not a compact JWS, bad base64url, bad JSON.
    MalformedToken,
    /// `alg` is `none`, unknown, outside the allow-list, or not the key's algorithm.
    AlgNotAllowed,
    /// A `crit` header parameter the gateway does not implement.
    CritUnsupported,
    /// `iss` names no provider this route accepts.
    BadIssuer,
    /// No key with this `kid` (after one rate-limited refetch).
    UnknownKid,
    BadSignature,
    Expired,
    /// `nbf` or `iat` in the future.
    NotYetValid,
    BadAudience,
    /// `exp` missing, or a time claim that is not a JSON number.
    BadClaims,
    /// `exp - iat` longer than the provider's `max_token_lifetime`, or no `iat` to tell.
    LifetimeTooLong,
    /// The JOSE `typ` is not the provider's `required_typ`.
    BadType,
    /// The token's `jti` is revoked, or its subject's tokens issued before a cutoff are.
    Revoked,
    /// The provider's revocations come from the fleet store and no copy of them has been
    /// read since start (`store.revocation_without_copy = "fail_closed"`).
    RevocationUnavailable,
    /// A forwarded claim would put control characters into a header.
    UnsafeClaimValue,
    InsufficientScope,
    ClaimMismatch,
    /// The provider's keys are not loaded (yet).
    KeysUnavailable,
    /// The introspection endpoint said the token is not active.
    InactiveToken,
    /// The introspection endpoint could not be asked, or its answer was not usable
    /// (down, slow, an error status, garbage): fail closed, never a 401 that logs users out.
    IntrospectionUnavailable,
    /// A token from a cookie on an unsafe method without the route's CSRF proof.
    CsrfFailed,
    /// A DPoP proof that is missing (with the `DPoP` scheme), repeated, or fails a check of
    /// RFC 9449 §4.3 (form, `typ`, `alg`, `jwk`, signature, `htm`, `htu`, `iat`, `ath`, `jti`).
    DpopProofInvalid,
    /// A DPoP proof whose `jti` was seen within its window.
    DpopReplay,
    /// The proof's key is not the one the token's `cnf.jkt` names, or a proof came with a
    /// token bound to no key.
    DpopBindingMismatch,
    /// A DPoP-bound token sent as a bearer token (a downgrade), or a bearer token where the
    /// provider requires DPoP.
    TokenBindingRequired,
    /// The proof lacks a nonce the gateway issued, or carries an old one (`dpop_nonce`).
    UseDpopNonce,
    /// The replay store is full of proofs still in their window: fail closed.
    DpopReplayUnavailable,
    /// A certificate-bound token (`cnf["x5t#S256"]`) without that client certificate on
    /// the connection (none, or another).
    CertBindingMismatch,
    /// A token bound in a way this gateway does not check (an unknown `cnf` member, or DPoP
    /// with a provider whose `dpop` is `off`): never taken as a bearer token.
    BindingUnsupported,
    /// The request body did not arrive in time: a read of it took longer than
    /// `server.body_read_timeout`, or it was still arriving when the upstream (which waits
    /// for it) reached its `read_timeout`.
    BodyTimeout,
    /// A bug: a panic while handling the request (answered 500, logged with its location).
    InternalError,
}

// === impl Reject ===

impl Reject {
    /// Every variant, for documentation and for pre-registering metric labels.
    pub const ALL: [Reject; 41] = [
        Self::NoRoute,
        Self::BadPath,
        Self::BadHost,
        Self::BadFraming,
        Self::MultipleAuthorization,
        Self::MultipleTokens,
        Self::HeadersTooLarge,
        Self::BadMethod,
        Self::MissingToken,
        Self::TokenTooLarge,
        Self::MalformedToken,
        Self::AlgNotAllowed,
        Self::CritUnsupported,
        Self::BadIssuer,
        Self::UnknownKid,
        Self::BadSignature,
        Self::Expired,
        Self::NotYetValid,
        Self::BadAudience,
        Self::BadClaims,
        Self::LifetimeTooLong,
        Self::BadType,
        Self::Revoked,
        Self::RevocationUnavailable,
        Self::UnsafeClaimValue,
        Self::InsufficientScope,
        Self::ClaimMismatch,
        Self::KeysUnavailable,
        Self::InactiveToken,
        Self::IntrospectionUnavailable,
        Self::CsrfFailed,
        Self::DpopProofInvalid,
        Self::DpopReplay,
        Self::DpopBindingMismatch,
        Self::TokenBindingRequired,
        Self::UseDpopNonce,
        Self::DpopReplayUnavailable,
        Self::CertBindingMismatch,
        Self::BindingUnsupported,
        Self::BodyTimeout,
        Self::InternalError,
    ];

    /// Position in `ALL`.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Metric label and log value.
    pub const fn label(self) -> &'static str {
        match self {
            Self::NoRoute => "no_route",
            Self::BadPath => "bad_path",
            Self::BadHost => "bad_host",
            Self::BadFraming => "bad_framing",
            Self::MultipleAuthorization => "multiple_authorization",
            Self::MultipleTokens => "multiple_tokens",
            Self::HeadersTooLarge => "headers_too_large",
            Self::BadMethod => "bad_method",
            Self::MissingToken => "missing_token",
            Self::TokenTooLarge => "token_too_large",
            Self::MalformedToken => "malformed_token",
            Self::AlgNotAllowed => "alg_not_allowed",
            Self::CritUnsupported => "crit_unsupported",
            Self::BadIssuer => "bad_issuer",
            Self::UnknownKid => "unknown_kid",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::BadAudience => "bad_audience",
            Self::BadClaims => "bad_claims",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::BadType => "bad_typ",
            Self::Revoked => "revoked",
            Self::RevocationUnavailable => "revocation_unavailable",
            Self::UnsafeClaimValue => "unsafe_claim_value",
            Self::InsufficientScope => "insufficient_scope",
            Self::ClaimMismatch => "claim_mismatch",
            Self::KeysUnavailable => "keys_unavailable",
            Self::InactiveToken => "inactive_token",
            Self::IntrospectionUnavailable => "introspection_unavailable",
            Self::CsrfFailed => "csrf_failed",
            Self::DpopProofInvalid => "dpop_proof_invalid",
            Self::DpopReplay => "dpop_replay",
            Self::DpopBindingMismatch => "dpop_binding_mismatch",
            Self::TokenBindingRequired => "token_binding_required",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::DpopReplayUnavailable => "dpop_replay_unavailable",
            Self::CertBindingMismatch => "cert_binding_mismatch",
            Self::BindingUnsupported => "binding_unsupported",
            Self::BodyTimeout => "body_timeout",
            Self::InternalError => "internal_error",
        }
    }

    pub const fn status(self) -> u16 {
        match self {
            Self::BadPath
            | Self::BadHost
            | Self::BadFraming
            | Self::BadMethod
            | Self::MultipleAuthorization
            | Self::MultipleTokens => 400,
            Self::MissingToken
            | Self::TokenTooLarge
            | Self::MalformedToken
            | Self::AlgNotAllowed
            | Self::CritUnsupported
            | Self::BadIssuer
            | Self::UnknownKid
            | Self::BadSignature
            | Self::Expired
            | Self::NotYetValid
            | Self::BadAudience
            | Self::BadClaims
            | Self::LifetimeTooLong
            | Self::BadType
            | Self::Revoked
            | Self::UnsafeClaimValue
            | Self::InactiveToken
            | Self::DpopProofInvalid
            | Self::DpopReplay
            | Self::DpopBindingMismatch
            | Self::TokenBindingRequired
            | Self::UseDpopNonce
            | Self::CertBindingMismatch
            | Self::BindingUnsupported => 401,
            Self::InsufficientScope | Self::ClaimMismatch | Self::CsrfFailed => 403,
            Self::NoRoute => 404,
            Self::HeadersTooLarge => 431,
            Self::KeysUnavailable
            | Self::IntrospectionUnavailable
            | Self::RevocationUnavailable
            | Self::DpopReplayUnavailable => 503,
            Self::BodyTimeout => 408,
            Self::InternalError => 500,
        }
    }

    /// Whether a report-only route lets the request through despite this refusal: the token
    /// and authorization reasons. Request-safety refusals (and `token_too_large`, whose
    /// bound protects the gateway) are enforced on every route. Exhaustive on purpose.
    pub const fn is_reportable(self) -> bool {
        match self {
            Self::MissingToken
            | Self::MalformedToken
            | Self::AlgNotAllowed
            | Self::CritUnsupported
            | Self::BadIssuer
            | Self::UnknownKid
            | Self::BadSignature
            | Self::Expired
            | Self::NotYetValid
            | Self::BadAudience
            | Self::BadClaims
            | Self::LifetimeTooLong
            | Self::BadType
            | Self::Revoked
            | Self::UnsafeClaimValue
            | Self::InsufficientScope
            | Self::ClaimMismatch
            | Self::KeysUnavailable
            | Self::InactiveToken
            | Self::IntrospectionUnavailable
            | Self::RevocationUnavailable
            | Self::CsrfFailed
            | Self::DpopProofInvalid
            | Self::DpopReplay
            | Self::DpopBindingMismatch
            | Self::TokenBindingRequired
            | Self::UseDpopNonce
            | Self::DpopReplayUnavailable
            | Self::CertBindingMismatch
            | Self::BindingUnsupported => true,
            Self::NoRoute
            | Self::BadPath
            | Self::BadHost
            | Self::BadFraming
            | Self::MultipleAuthorization
            | Self::MultipleTokens
            | Self::HeadersTooLarge
            | Self::BadMethod
            | Self::TokenTooLarge
            | Self::BodyTimeout
            | Self::InternalError => false,
        }
    }

    /// RFC 6750 §3.1 error code, when the answer carries one. Exhaustive on purpose: a new
    /// variant must choose.
    pub const fn oauth_error(self) -> Option<&'static str> {
        match self {
            Self::MultipleAuthorization | Self::MultipleTokens => Some("invalid_request"),
            Self::TokenTooLarge
            | Self::MalformedToken
            | Self::AlgNotAllowed
            | Self::CritUnsupported
            | Self::BadIssuer
            | Self::UnknownKid
            | Self::BadSignature
            | Self::Expired
            | Self::NotYetValid
            | Self::BadAudience
            | Self::BadClaims
            | Self::LifetimeTooLong
            | Self::BadType
            | Self::Revoked
            | Self::UnsafeClaimValue
            | Self::InactiveToken
            | Self::DpopBindingMismatch
            | Self::TokenBindingRequired
            | Self::CertBindingMismatch
            | Self::BindingUnsupported => Some("invalid_token"),
            // RFC 9449 §12.2's codes, sent with the `DPoP` scheme.
            Self::DpopProofInvalid | Self::DpopReplay => Some("invalid_dpop_proof"),
            Self::UseDpopNonce => Some("use_dpop_nonce"),
            Self::InsufficientScope | Self::ClaimMismatch => Some("insufficient_scope"),
            Self::NoRoute
            | Self::BadPath
            | Self::BadHost
            | Self::BadFraming
            | Self::HeadersTooLarge
            | Self::BadMethod
            | Self::MissingToken
            | Self::KeysUnavailable
            | Self::IntrospectionUnavailable
            | Self::RevocationUnavailable
            | Self::CsrfFailed
            | Self::DpopReplayUnavailable
            | Self::BodyTimeout
            | Self::InternalError => None,
        }
    }

    /// Short, fixed text for `error_description` and the JSON body. Never echoes input.
    pub const fn description(self) -> &'static str {
        match self {
            Self::NoRoute => "no route for this request",
            Self::BadPath => "request path cannot be normalized safely",
            Self::BadHost => "missing, repeated or inconsistent host",
            Self::BadFraming => "conflicting or malformed message framing",
            Self::MultipleAuthorization => "more than one Authorization header",
            Self::MultipleTokens => "more than one token in the request",
            Self::HeadersTooLarge => "request headers too large",
            Self::BadMethod => "request method must be uppercase",
            Self::MissingToken => "bearer token required",
            Self::TokenTooLarge => "token too large",
            Self::MalformedToken => "token is not a well-formed JWT",
            Self::AlgNotAllowed => "token algorithm not allowed",
            Self::CritUnsupported => "token has unsupported critical header parameters",
            Self::BadIssuer => "token issuer not accepted",
            Self::UnknownKid => "no key found for this token",
            Self::BadSignature => "token signature is invalid",
            Self::Expired => "token has expired",
            Self::NotYetValid => "token is not valid yet",
            Self::BadAudience => "token audience not accepted",
            Self::BadClaims => "token claims are missing or malformed",
            Self::LifetimeTooLong => "token lifetime is longer than allowed",
            Self::BadType => "token type not accepted",
            Self::Revoked => "token has been revoked",
            Self::RevocationUnavailable => "token revocations cannot be checked now",
            Self::UnsafeClaimValue => "token claim cannot be forwarded safely",
            Self::InsufficientScope => "token lacks a required scope",
            Self::ClaimMismatch => "token lacks a required claim value",
            Self::KeysUnavailable => "verification keys are not available",
            Self::InactiveToken => "token is not active",
            Self::IntrospectionUnavailable => "token introspection is not available",
            Self::CsrfFailed => "cross-site request refused for a cookie token",
            Self::DpopProofInvalid => "DPoP proof is missing or invalid",
            Self::DpopReplay => "DPoP proof was already used",
            Self::DpopBindingMismatch => "DPoP proof and token are not bound to the same key",
            Self::TokenBindingRequired => "token must be sent with a DPoP proof",
            Self::UseDpopNonce => "DPoP proof must carry the server's nonce",
            Self::DpopReplayUnavailable => "DPoP proofs cannot be checked for replay now",
            Self::CertBindingMismatch => "token is bound to another client certificate",
            Self::BindingUnsupported => "token binding is not supported here",
            Self::BodyTimeout => "request body not received in time",
            Self::InternalError => "internal error",
        }
    }
}

impl Reject {
    /// Answered with a `DPoP` challenge (RFC 9449 §7.1) instead of `Bearer`: the refusals
    /// about DPoP proofs and bindings.
    pub const fn dpop_challenge(self) -> bool {
        matches!(
            self,
            Self::DpopProofInvalid
                | Self::DpopReplay
                | Self::DpopBindingMismatch
                | Self::TokenBindingRequired
                | Self::UseDpopNonce
        )
    }
}

impl From<BadTarget> for Reject {
    fn from(_: BadTarget) -> Self {
        Reject::BadPath
    }
}
