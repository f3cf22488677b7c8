//! `cargo fuzz run --sanitizer none bearer`: see `authgate::fuzzing::bearer`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate::fuzzing::bearer(data));
