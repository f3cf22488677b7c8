//! `cargo fuzz run --sanitizer none jwks`: see `authgate::fuzzing::jwks`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate::fuzzing::jwks(data));
