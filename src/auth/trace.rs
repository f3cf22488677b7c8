//! The steps of one decision, for `authgate explain`: `decide_traced` reports each step it
//! takes to a `Trace`. The gateway's own `decide` passes `NoTrace`, whose calls compile to
//! nothing, so explaining a request runs the very code that decides it, at no cost to the
//! request path.

use crate::formats::revocation::Verdict;
use http::HeaderName;

use super::binding::Bound;
use super::claims::Claims;
use super::dpop::BadProof;
use super::Reject;
use crate::config::routes::{Csrf, Route, TokenSource};
use crate::config::{ProviderId, RouteId};
use crate::formats::normalize::Authority;

/// One step, borrowed from the decision as it runs. Never holds the token or its signature.
#[derive(Debug)]
pub enum Step<'a> {
    /// The head passed the size (at most `max_header_bytes`), `Host` and framing checks.
    Message { max_header_bytes: usize },
    /// The normalized path, and the query as sent (never printed).
    Target {
        path: &'a str,
        query: Option<&'a str>,
    },
    /// The authority routed on, from `Host`, `:authority` or the absolute-form target.
    Authority(&'a Authority),
    /// The route that matched, for this host, path and method.
    Route {
        id: RouteId,
        route: &'a Route,
        host: &'a str,
        path: &'a str,
        method: &'a http::Method,
    },
    /// No token, on a route where that is allowed (`auth = "optional"`), or a route that
    /// never looks at tokens (`auth = "none"`).
    Anonymous,
    /// A token of `bytes` bytes was found in `source`.
    Bearer {
        bytes: usize,
        source: &'a TokenSource,
    },
    /// A cookie-borne token on an unsafe method passed the route's CSRF check.
    Csrf(&'a Csrf),
    /// The token goes to this provider's introspection endpoint: the answer known now
    /// (`None`: none yet, the endpoint is asked).
    Introspection {
        provider: ProviderId,
        active: Option<bool>,
    },
    /// A verification of this token made earlier, still holding, was used.
    Cached { provider: ProviderId },
    /// The JOSE header's fields the decision reads.
    Jose {
        alg: &'a str,
        kid: Option<&'a str>,
        typ: Option<&'a str>,
        crit: bool,
    },
    /// The provider whose keys are tried (chosen by the unverified `iss` when the route
    /// accepts several).
    Provider(ProviderId),
    /// How many of the provider's keys match the `kid` and `alg`, and whether one verified.
    Signature { candidates: usize, valid: bool },
    /// The registered claims, checked against the clock with the provider's leeway.
    Registered {
        claims: &'a Claims,
        now: f64,
        leeway: f64,
    },
    /// The provider's revocation lists were asked.
    Revocation { verdict: Verdict },
    /// The DPoP proof failed this check (RFC 9449 §4.3); `htu` is the URI it had to name.
    ProofRefused { bad: BadProof, htu: &'a str },
    /// The token's binding checked out: a DPoP proof by its key, its client certificate
    /// (both false: a bearer token, where the provider allows one).
    Binding(Bound),
    /// The route's scopes and claim matchers against the verified claims.
    Authorize {
        route: &'a Route,
        claims: &'a Claims,
    },
    /// A claim header that goes upstream (its value is the claim's).
    ClaimHeader { header: &'a HeaderName },
    /// A refusal, at the step that made it.
    Refused(Reject),
    /// On a report-only route, the refusal that was not enforced.
    WouldReject(Reject),
}

/// Receives the steps of a decision.
pub trait Trace {
    fn step(&mut self, step: Step<'_>);
}

/// The gateway's trace: nothing.
pub struct NoTrace;

impl Trace for NoTrace {
    #[inline(always)]
    fn step(&mut self, _: Step<'_>) {}
}

impl<F: FnMut(Step<'_>)> Trace for F {
    fn step(&mut self, step: Step<'_>) {
        self(step)
    }
}
