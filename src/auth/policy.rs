//! Authorization: whether a matched route's requirements are met by verified claims.

use super::claims::{has_scope, matches_any, Claims};
use super::Reject;
use crate::config::routes::Route;

/// Scopes, then claim matchers: every scope must be present, every matcher satisfied.
pub fn authorize(route: &Route, claims: &Claims) -> Result<(), Reject> {
    if !route.require_scopes.iter().all(|s| has_scope(claims, s)) {
        return Err(Reject::InsufficientScope);
    }
    for req in &route.require_claims {
        match req.claim.lookup(claims) {
            Some(v) if matches_any(v, &req.accepted) => {}
            _ => return Err(Reject::ClaimMismatch),
        }
    }
    Ok(())
}
