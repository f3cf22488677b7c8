//! `cargo fuzz run --sanitizer none decide`: see `authgate::fuzzing::decide_token`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate::fuzzing::decide_token(data));
