//! `cargo fuzz run --sanitizer none decide`: see `authgate_fuzz::decide_token`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate_fuzz::decide_token(data));
