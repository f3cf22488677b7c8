//! `decide` with introspection: which tokens go to an endpoint, what a known answer allows,
//! and what the thin layer is asked to do when the answer is not known yet.

use std::collections::HashMap;

use super::*;

/// A context whose introspection answers are a table (the runtime's cache stands behind it).
struct WithAnswers {
    snap: Snapshot,
    answers: HashMap<(ProviderId, TokenKey), Lookup>,
}

impl Context for WithAnswers {
    fn config(&self) -> &Config {
        self.snap.config()
    }
    fn keys(&self, p: ProviderId) -> &ProviderKeys {
        self.snap.keys(p)
    }
    fn revocations(&self, p: ProviderId) -> Option<&dyn Revocations> {
        self.snap.revocations(p)
    }
    fn token_cache(&self) -> Option<&TokenCache> {
        self.snap.token_cache()
    }
    fn introspection(&self, p: ProviderId, token: &TokenKey) -> Option<Lookup> {
        self.answers.get(&(p, *token)).cloned()
    }
    fn dpop(&self) -> Option<&crate::auth::dpop::DpopState> {
        self.snap.dpop()
    }
}

fn setup(idp_extra: &str) -> (WithAnswers, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s").unwrap();
    let text = config_text().replace(
        "[headers]",
        &format!(
            "[providers.idp]\nissuer = \"https://idp\"\naudiences = [\"api\"]\nintrospection_url = \"http://127.0.0.1:9/i\"\nclient_id = \"gw\"\nclient_secret_file = {:?}\n{idp_extra}\n[headers]",
            secret.display().to_string()
        ),
    ) + "[[routes]]\nname = \"opaque\"\npath_prefix = \"/opaque\"\nproviders = [\"idp\"]\nrequire_scopes = [\"read\"]\nupstream = \"up\"\n[[routes]]\nname = \"mixed\"\npath_prefix = \"/mixed\"\nproviders = [\"corp\", \"idp\"]\nupstream = \"up\"\n[[routes]]\nname = \"report\"\npath_prefix = \"/report\"\nproviders = [\"idp\"]\nmode = \"report\"\nupstream = \"up\"\n[[routes]]\nname = \"jwt-only\"\npath_prefix = \"/jwt\"\nproviders = [\"corp\"]\nupstream = \"up\"\n";
    let snap = snapshot_of(&text);
    let cx = WithAnswers {
        snap,
        answers: HashMap::new(),
    };
    (cx, dir)
}

fn idp(cx: &WithAnswers) -> ProviderId {
    ProviderId::new(
        cx.config()
            .providers
            .iter()
            .position(|p| p.name == "idp")
            .unwrap(),
    )
}

fn answer(cx: &mut WithAnswers, token: &str, lookup: Lookup) {
    let p = idp(cx);
    cx.answers.insert((p, TokenCache::key(token)), lookup);
}

fn active(extra: Value) -> Lookup {
    let mut c = json!({"iss": "https://idp", "aud": "api", "sub": "bob", "scope": "read",
                       "iat": now() - 1.0, "exp": now() + 60.0});
    if let (Value::Object(base), Value::Object(more)) = (&mut c, extra) {
        base.extend(more);
    }
    let Value::Object(m) = c else { unreachable!() };
    Lookup::Active(Arc::new(m))
}

fn decide_on(cx: &WithAnswers, target: &str, token: &str) -> Result<Grant, Denial> {
    run(
        cx,
        Method::GET,
        target,
        &[("authorization", &bearer(token))],
    )
}

#[test]
fn opaque_tokens_wait_for_an_answer_then_follow_it() {
    let (mut cx, _dir) = setup("");
    let p = idp(&cx);
    let t = "ory_at_abc.def";
    // Not known yet: 503 naming the provider, and the thin layer is asked to introspect.
    let first = decide_on(&cx, "/opaque/x", t);
    let d = first.as_ref().unwrap_err();
    assert_eq!(
        (d.reason, d.provider),
        (Reject::IntrospectionUnavailable, Some(p))
    );
    assert!(matches!(pending(&first), Some(Pending::Introspect(q, _)) if q == p));
    // Active: granted with the answer's claims; the route's scope is checked.
    answer(&mut cx, t, active(json!({})));
    let g = decide_on(&cx, "/opaque/x", t).unwrap();
    assert_eq!(g.provider, Some(p));
    assert!(g
        .claim_headers
        .iter()
        .any(|(h, v)| h == "x-user-id" && v == "bob"));
    answer(&mut cx, t, active(json!({"scope": "write"})));
    assert_eq!(
        reason(decide_on(&cx, "/opaque/x", t)),
        Reject::InsufficientScope
    );
    // The answer's claims are checked like a JWT's.
    for (extra, want) in [
        (json!({"exp": now() - 120.0}), Reject::Expired),
        (json!({"aud": "other"}), Reject::BadAudience),
        (json!({"iss": "https://corp"}), Reject::BadIssuer),
        (json!({"exp": "soon"}), Reject::BadClaims),
        (json!({"nbf": now() + 600.0}), Reject::NotYetValid),
    ] {
        answer(&mut cx, t, active(extra.clone()));
        assert_eq!(reason(decide_on(&cx, "/opaque/x", t)), want, "{extra}");
    }
    // A refresh token is no bearer credential, whatever the endpoint says of it.
    for extra in [
        json!({"token_type": "refresh_token"}),
        json!({"token_type": "urn:ietf:params:oauth:token-type:refresh_token"}),
        json!({"token_type": "Refresh-Token"}),
        json!({"token_type": ["refresh_token"]}),
        json!({"token_use": "refresh_token"}),
        json!({"token_use": "id_token"}),
        json!({"typ": "Refresh"}),
        json!({"typ": "Offline"}),
        json!({"typ": "ID"}),
    ] {
        answer(&mut cx, t, active(extra.clone()));
        assert_eq!(
            reason(decide_on(&cx, "/opaque/x", t)),
            Reject::BadType,
            "{extra}"
        );
    }
    answer(
        &mut cx,
        t,
        active(json!({"token_type": "Bearer", "token_use": "access_token"})),
    );
    assert!(decide_on(&cx, "/opaque/x", t).is_ok());
    // Inactive: 401, and nothing more to do.
    answer(&mut cx, t, Lookup::Inactive);
    let r = decide_on(&cx, "/opaque/x", t);
    assert_eq!(
        reason(decide_on(&cx, "/opaque/x", t)),
        Reject::InactiveToken
    );
    assert_eq!(pending(&r), None);
    // Another token never finds this one's answer.
    assert_eq!(
        reason(decide_on(&cx, "/opaque/x", "ory_at_abc.deg")),
        Reject::IntrospectionUnavailable
    );
}

#[test]
fn which_tokens_are_introspected() {
    let (mut cx, _dir) = setup("");
    let corp_jwt = rs256(&claims());
    // A JWT on a route with a JWKS provider: verified locally, no answer needed.
    assert!(decide_on(&cx, "/mixed/x", &corp_jwt).is_ok());
    // An opaque token on the same route: the route's introspecting provider.
    assert_eq!(
        reason(decide_on(&cx, "/mixed/x", "opaque-token")),
        Reject::IntrospectionUnavailable
    );
    // Three parts without a JOSE header are opaque too (where a route introspects) ...
    answer(&mut cx, "a.b.c", active(json!({})));
    assert!(decide_on(&cx, "/opaque/x", "a.b.c").is_ok());
    // A JOSE object of another shape (a JWE's five parts, a JWS with a stray dot) is
    // nobody's opaque token: malformed, and never sent to the endpoint.
    let jwe_like = format!("{corp_jwt}.AAAA.BBBB");
    let stray_dot = format!("{corp_jwt}.");
    for t in [&jwe_like, &stray_dot] {
        let r = decide_on(&cx, "/opaque/x", t);
        assert_eq!(pending(&r), None, "no call");
        assert_eq!(reason(r), Reject::MalformedToken);
    }
    // ... and malformed where it does not.
    assert_eq!(
        reason(decide_on(&cx, "/jwt/x", "a.b.c")),
        Reject::MalformedToken
    );
    assert_eq!(
        reason(decide_on(&cx, "/jwt/x", "opaque-token")),
        Reject::MalformedToken
    );
    // A JWT for a provider without keys is introspected (its signature is the IdP's call).
    let idp_jwt = rs256(
        &json!({"iss": "https://idp", "aud": "api", "sub": "eve", "scope": "read", "exp": now() + 60.0}),
    );
    assert_eq!(
        reason(decide_on(&cx, "/opaque/x", &idp_jwt)),
        Reject::IntrospectionUnavailable
    );
    answer(&mut cx, &idp_jwt, Lookup::Inactive);
    assert_eq!(
        reason(decide_on(&cx, "/opaque/x", &idp_jwt)),
        Reject::InactiveToken
    );
    // A JWT of another issuer (or none) is never handed to that endpoint, even on a route
    // whose one provider introspects (the attack of issue 14's review: corp's valid token
    // sent to idp).
    let corp_jwt = rs256(&claims());
    answer(&mut cx, &corp_jwt, active(json!({})));
    let r = decide_on(&cx, "/opaque/x", &corp_jwt);
    assert_eq!(reason(r), Reject::BadIssuer);
    let no_iss = rs256(&json!({"aud": "api", "sub": "eve", "exp": now() + 60.0}));
    let r = decide_on(&cx, "/opaque/x", &no_iss);
    assert_eq!(pending(&r), None, "no call");
    assert_eq!(reason(r), Reject::BadIssuer);
}

#[test]
fn report_routes_and_missing_audiences() {
    let (mut cx, _dir) = setup("require_aud = false");
    let t = "opaque-token";
    // Report-only: not known yet is still a pending introspection; inactive goes through.
    let first = decide_on(&cx, "/report/x", t);
    assert!(matches!(pending(&first), Some(Pending::Introspect(..))));
    answer(&mut cx, t, Lookup::Inactive);
    let g = decide_on(&cx, "/report/x", t).unwrap();
    assert_eq!(
        g.would_reject.map(|d| d.reason),
        Some(Reject::InactiveToken)
    );
    assert!(g.claim_headers.is_empty() && g.provider.is_none());
    // require_aud = false: an answer without aud passes; one with another aud does not.
    let Lookup::Active(c) = active(json!({})) else {
        unreachable!()
    };
    let mut no_aud = (*c).clone();
    no_aud.remove("aud");
    answer(&mut cx, t, Lookup::Active(Arc::new(no_aud)));
    assert!(decide_on(&cx, "/opaque/x", t).is_ok());
    answer(&mut cx, t, active(json!({"aud": []})));
    assert!(
        decide_on(&cx, "/opaque/x", t).is_ok(),
        "an empty aud list is no aud"
    );
    answer(&mut cx, t, active(json!({"aud": "other"})));
    assert_eq!(reason(decide_on(&cx, "/opaque/x", t)), Reject::BadAudience);
    answer(&mut cx, t, active(json!({"aud": ["other"]})));
    assert_eq!(reason(decide_on(&cx, "/opaque/x", t)), Reject::BadAudience);
}

/// An IdP that leaves `cnf` out of its answer does not unbind a token that states its own
/// binding; an answer that says `token_type` DPoP without the key cannot be checked; a
/// JOSE header the gateway will not parse is never taken for an opaque token.
#[test]
fn a_binding_is_never_dropped_by_an_answer() {
    use base64::Engine as _;
    let (mut cx, _dir) = setup("");
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    // JWT-shaped, but for the introspecting route: it goes to the endpoint (its header
    // does not parse as the gateway's, so it is not verified locally either).
    let bound = format!(
        "{}.{}.sig",
        b64(r#"{"typ":"opaque"}"#),
        b64(r#"{"cnf":{"jkt":"the-clients-key"}}"#)
    );
    answer(&mut cx, &bound, active(json!({})));
    assert_eq!(
        reason(decide_on(&cx, "/opaque/x", &bound)),
        Reject::TokenBindingRequired,
        "the token's own cnf.jkt holds"
    );
    let t = "ory_at_plain";
    answer(&mut cx, t, active(json!({"token_type": "DPoP"})));
    assert_eq!(
        reason(decide_on(&cx, "/opaque/x", t)),
        Reject::BindingUnsupported
    );
    // DPoP-typed but bound only to a certificate: no key to hold a proof to.
    answer(
        &mut cx,
        t,
        active(json!({"token_type": "DPoP", "cnf": {"x5t#S256": "abc"}})),
    );
    assert_eq!(
        reason(decide_on(&cx, "/opaque/x", t)),
        Reject::BindingUnsupported
    );
    answer(&mut cx, t, active(json!({"token_type": "Bearer"})));
    assert!(decide_on(&cx, "/opaque/x", t).is_ok());
    // A JWT-shaped token whose own `cnf` is named twice: malformed, not unbound.
    let doubled_cnf = format!(
        "{}.{}.sig",
        b64(r#"{"typ":"opaque"}"#),
        b64(r#"{"cnf":{"jkt":"k"},"cnf":{}}"#)
    );
    answer(&mut cx, &doubled_cnf, active(json!({})));
    assert_eq!(
        reason(decide_on(&cx, "/opaque/x", &doubled_cnf)),
        Reject::MalformedToken
    );
    // A header naming `alg` twice: malformed, never sent to the endpoint.
    let doubled = format!(
        "{}.{}.sig",
        b64(r#"{"alg":"RS256","alg":"none"}"#),
        b64(r#"{"sub":"x"}"#)
    );
    let r = decide_on(&cx, "/opaque/x", &doubled);
    assert_eq!(reason(r), Reject::MalformedToken);
}
