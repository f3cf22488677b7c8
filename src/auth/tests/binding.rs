//! Token bindings through `decide` (issue 15): what the integration tests cannot reach
//! cheaply — unusual `cnf` shapes, certificate thumbprints given directly, report-only
//! routes, tokens from cookies, and the trace.

use http::header::HOST;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::auth::trace::Step;
use crate::formats::dpop::thumbprint;

fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(&std::fs::read(format!("{FIX}/ec.pem")).unwrap()).unwrap()
}

fn token_with(cnf: serde_json::Value) -> String {
    let mut c = claims();
    c["cnf"] = cnf;
    rs256(&c)
}

/// A proof by the EC fixture key for `GET http://localhost{path}` and `token`, and the
/// key's thumbprint.
fn proof(path: &str, token: &str, jti: &str) -> (String, String) {
    let jwk = Jwk::from_encoding_key(&ec(), Algorithm::ES256).unwrap();
    let jkt = thumbprint(&serde_json::to_value(&jwk).unwrap()).unwrap();
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some("dpop+jwt".into());
    h.jwk = Some(jwk);
    use base64::Engine as _;
    use sha2::Digest as _;
    let ath = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(token));
    let claims = json!({"jti": jti, "htm": "GET", "htu": format!("http://localhost{path}"), "iat": now(), "ath": ath});
    (jsonwebtoken::encode(&h, &claims, &ec()).unwrap(), jkt)
}

/// `GET /api/x` to `localhost` with `headers` (a `Host` added).
fn headers_to_localhost(headers: &[(&str, &str)]) -> HeaderMap {
    let mut map = header_map(headers);
    map.insert(HOST, HeaderValue::from_static("localhost"));
    map
}

fn head_of(map: &HeaderMap, tls: bool, client_cert: Option<[u8; 32]>) -> RequestHead<'_> {
    RequestHead {
        method: &Method::GET,
        version: http::Version::HTTP_11,
        target: b"/api/x",
        authority: None,
        headers: map,
        raw_head: None,
        tls,
        client_cert,
    }
}

fn run_cert(snap: &Snapshot, token: &str, cert: Option<[u8; 32]>) -> Result<Grant, Denial> {
    let map = headers_to_localhost(&[("authorization", &bearer(token))]);
    decide(snap, &head_of(&map, true, cert), now())
}

#[test]
fn cnf_shapes() {
    let snap = snapshot();
    let get = |t: &str| {
        run(
            &snap,
            Method::GET,
            "/api/x",
            &[("authorization", &bearer(t))],
        )
    };
    // A confirmation method the gateway cannot hold the client to: never a bearer token.
    for cnf in [
        json!({"jwk": {"kty": "EC"}}),
        json!({"kid": "k1"}),
        json!({"jku": "https://x"}),
    ] {
        assert_eq!(
            reason(get(&token_with(cnf.clone()))),
            Reject::BindingUnsupported,
            "{cnf}"
        );
    }
    for cnf in [
        json!("jkt"),
        json!({"jkt": 7}),
        json!({"x5t#S256": null}),
        json!([]),
    ] {
        assert_eq!(
            reason(get(&token_with(cnf.clone()))),
            Reject::BadClaims,
            "{cnf}"
        );
    }
    // An empty `cnf` binds to nothing.
    assert!(get(&token_with(json!({}))).is_ok());
}

#[test]
fn certificate_thumbprints() {
    let snap = snapshot();
    let cert = [7u8; 32];
    use base64::Engine as _;
    let x5t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(cert);
    let t = token_with(json!({ "x5t#S256": x5t }));
    let g = run_cert(&snap, &t, Some(cert)).expect("its certificate");
    assert_eq!(g.bound.label(), Some("mtls"));
    assert_eq!(
        reason(run_cert(&snap, &t, Some([8; 32]))),
        Reject::CertBindingMismatch
    );
    assert_eq!(
        reason(run_cert(&snap, &t, None)),
        Reject::CertBindingMismatch
    );
    // Padded or standard-alphabet spellings of the thumbprint are another value.
    let padded = token_with(json!({ "x5t#S256": format!("{x5t}=") }));
    assert_eq!(
        reason(run_cert(&snap, &padded, Some(cert))),
        Reject::CertBindingMismatch
    );
    // An unbound token ignores the certificate.
    assert_eq!(
        run_cert(&snap, &rs256(&claims()), Some(cert))
            .unwrap()
            .bound
            .label(),
        None
    );
}

#[test]
fn dpop_through_decide_and_its_trace() {
    let snap = snapshot();
    let (_, jkt) = proof("/api/x", "", "probe");
    let t = token_with(json!({ "jkt": jkt }));
    let (p, _) = proof("/api/x", &t, "j-1");
    let headers = [("authorization", format!("DPoP {t}")), ("dpop", p)];
    let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let mut steps = Vec::new();
    let map = headers_to_localhost(&h);
    let head = head_of(&map, false, None);
    let g = decide_traced(&snap, &head, now(), &mut |s: Step<'_>| {
        if let Step::Binding(b) = s {
            steps.push(b);
        }
    })
    .expect("a fresh proof");
    assert_eq!(g.bound.label(), Some("dpop"));
    assert!(!g.dpop_nonce);
    assert_eq!(steps.len(), 1);
    assert_eq!(reason(decide(&snap, &head, now())), Reject::DpopReplay);
    // `explain` learns which check a refused proof failed.
    let (p, _) = proof("/api/other", &t, "j-9");
    let mut map = header_map(&[("authorization", &format!("DPoP {t}")), ("dpop", &p)]);
    map.insert(HOST, HeaderValue::from_static("localhost"));
    let head = RequestHead {
        headers: &map,
        ..head
    };
    let mut refused = None;
    let r = decide_traced(&snap, &head, now(), &mut |s: Step<'_>| {
        if let Step::ProofRefused { bad, htu } = s {
            assert_eq!(htu, "http://localhost/api/x");
            refused = Some(bad);
        }
    });
    assert_eq!(reason(r), Reject::DpopProofInvalid);
    assert_eq!(refused, Some(crate::auth::dpop::BadProof::Uri));
}

/// A context without DPoP state refuses DPoP requests: a proof is never accepted unchecked
/// for replay.
#[test]
fn no_replay_store_fails_closed() {
    struct NoDpop(Snapshot);
    impl Context for NoDpop {
        fn config(&self) -> &Config {
            self.0.config()
        }
        fn keys(&self, p: ProviderId) -> &ProviderKeys {
            self.0.keys(p)
        }
        fn revocations(&self, p: ProviderId) -> Option<&dyn Revocations> {
            self.0.revocations(p)
        }
        fn token_cache(&self) -> Option<&TokenCache> {
            self.0.token_cache()
        }
        fn dpop(&self) -> Option<&crate::auth::dpop::DpopState> {
            None
        }
    }
    let cx = NoDpop(snapshot());
    let (_, jkt) = proof("/api/x", "", "probe");
    let t = token_with(json!({ "jkt": jkt }));
    let (p, _) = proof("/api/x", &t, "j-2");
    let r = run(
        &cx,
        Method::GET,
        "/api/x",
        &[("authorization", &format!("DPoP {t}")), ("dpop", &p)],
    );
    assert_eq!(reason(r), Reject::DpopReplayUnavailable);
}

/// A claim named twice reads as either value depending on the parser: a bound token that
/// says `"cnf": {}` after its `cnf` is no token (it would pass as a bearer token here).
#[test]
fn a_claim_named_twice_is_no_token() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let c = claims();
    let body = c.to_string();
    let doubled = format!(
        "{},\"cnf\":{{\"jkt\":\"abc\"}},\"cnf\":{{}}}}",
        &body[..body.len() - 1]
    );
    let message = format!(
        "{}.{}",
        b64(r#"{"alg":"RS256","kid":"rsa"}"#),
        b64(&doubled)
    );
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &rsa(), Algorithm::RS256).unwrap();
    let token = format!("{message}.{sig}");
    let snap = snapshot();
    let r = run(
        &snap,
        Method::GET,
        "/api/x",
        &[("authorization", &bearer(&token))],
    );
    assert_eq!(reason(r), Reject::MalformedToken);
    // The same claims once each pass.
    let once = format!("{}.{}", b64(r#"{"alg":"RS256","kid":"rsa"}"#), b64(&body));
    let sig = jsonwebtoken::crypto::sign(once.as_bytes(), &rsa(), Algorithm::RS256).unwrap();
    let r = run(
        &snap,
        Method::GET,
        "/api/x",
        &[("authorization", &bearer(&format!("{once}.{sig}")))],
    );
    assert!(r.is_ok(), "{r:?}");
}

/// The fleet store's answer for a granted proof: the first use stands, a use elsewhere is a
/// replay, an outage follows the policy; a bearer request carries no proof to ask about.
#[test]
fn the_fleet_store_settles_a_granted_proof() {
    use crate::auth::{settle_fleet, FleetAnswer, OnStoreOutage};
    let snap = snapshot();
    let (_, jkt) = proof("/api/x", "", "probe");
    let t = token_with(json!({ "jkt": jkt }));
    let grant = |jti: &str| {
        let (p, _) = proof("/api/x", &t, jti);
        let map = headers_to_localhost(&[("authorization", &format!("DPoP {t}")), ("dpop", &p)]);
        decide(&snap, &head_of(&map, false, None), now()).expect("a fresh proof")
    };
    let g = grant("f-1");
    let (_, hold) = g.bound.proof.expect("the proof, for the fleet");
    // Held for the window from its iat (60 s + 30 s leeway, and the store's extra second).
    assert!((85_000..=91_000).contains(&hold), "{hold}");
    let cfg = &snap.config;
    assert!(settle_fleet(cfg, g, FleetAnswer::First, OnStoreOutage::FailClosed).is_ok());
    let r = settle_fleet(cfg, grant("f-2"), FleetAnswer::Seen, OnStoreOutage::Local);
    assert_eq!(reason(r), Reject::DpopReplay);
    let r = settle_fleet(
        cfg,
        grant("f-3"),
        FleetAnswer::Unavailable,
        OnStoreOutage::FailClosed,
    );
    assert_eq!(reason(r), Reject::DpopReplayUnavailable);
    let r = settle_fleet(
        cfg,
        grant("f-4"),
        FleetAnswer::Unavailable,
        OnStoreOutage::Local,
    );
    assert!(r.is_ok());
    // A bearer request has no proof for the fleet.
    let plain = run(
        &snap,
        Method::GET,
        "/api/x",
        &[("authorization", &bearer(&rs256(&claims())))],
    );
    assert_eq!(plain.unwrap().bound.proof, None);
}

/// On a report-only route a replay elsewhere is reported, not enforced: the request goes
/// through anonymous, without the token's claims or its proof.
#[test]
fn a_fleet_replay_on_a_report_only_route_is_reported() {
    use crate::auth::{settle_fleet, FleetAnswer, OnStoreOutage};
    let text = config_text() + "[[routes]]\nname = \"rep\"\npath_prefix = \"/rep\"\nmode = \"report\"\nupstream = \"up\"\n";
    let snap = snapshot_of(&text);
    let (_, jkt) = proof("/rep/x", "", "probe");
    let t = token_with(json!({ "jkt": jkt }));
    let (p, _) = proof("/rep/x", &t, "r-1");
    let map = headers_to_localhost(&[("authorization", &format!("DPoP {t}")), ("dpop", &p)]);
    let mut head = head_of(&map, false, None);
    head.target = b"/rep/x";
    let g = decide(&snap, &head, now()).expect("granted");
    assert!(g.bound.proof.is_some() && !g.claim_headers.is_empty());
    let g = settle_fleet(
        &snap.config,
        g,
        FleetAnswer::Seen,
        OnStoreOutage::FailClosed,
    )
    .expect("reported, not refused");
    assert_eq!(g.would_reject.map(|d| d.reason), Some(Reject::DpopReplay));
    assert!(g.claim_headers.is_empty() && g.provider.is_none() && g.bound.proof.is_none());
}
