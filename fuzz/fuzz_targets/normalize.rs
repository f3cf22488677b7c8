//! `cargo fuzz run --sanitizer none normalize`: see `authgate_fuzz::normalize`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate_fuzz::normalize(data));
