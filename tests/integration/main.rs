//! Integration tests: the real `authgate` binary, a real upstream, a real JWKS server and
//! real signed tokens, all on 127.0.0.1 ephemeral ports. One crate, so pingora links once.

mod support;

mod admin;
mod cache;
mod cases;
mod cli;
mod dpop;
mod explain;
mod fast;
mod framing;
mod fuzz_corpus;
mod hardening;
mod headers;
mod interop;
mod introspection;
mod keys;
mod limits;
mod reload;
mod report;
mod revocation;
mod routing;
mod soak;
mod store;
mod tls;
mod tokens;
mod upstream;
mod wire;
