//! `cargo fuzz run --sanitizer none config`: see `authgate_fuzz::config`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate_fuzz::config(data));
