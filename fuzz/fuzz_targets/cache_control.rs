//! `cargo fuzz run --sanitizer none cache_control`: see `authgate::fuzzing::cache_control`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate::fuzzing::cache_control(data));
