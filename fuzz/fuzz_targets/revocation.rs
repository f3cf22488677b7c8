//! `cargo fuzz run --sanitizer none revocation`: see `authgate_fuzz::revocation`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate_fuzz::revocation(data));
