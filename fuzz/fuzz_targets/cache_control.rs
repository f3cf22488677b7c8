//! `cargo fuzz run --sanitizer none cache_control`: see `authgate_fuzz::cache_control`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate_fuzz::cache_control(data));
