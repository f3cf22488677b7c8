//! `cargo fuzz run --sanitizer none revocation`: see `authgate::fuzzing::revocation`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate::fuzzing::revocation(data));
