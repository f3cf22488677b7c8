//! `cargo fuzz run --sanitizer none head`: see `authgate_fuzz::head`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate_fuzz::head(data));
