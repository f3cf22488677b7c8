//! `cargo fuzz run --sanitizer none jwks`: see `authgate_fuzz::jwks`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate_fuzz::jwks(data));
