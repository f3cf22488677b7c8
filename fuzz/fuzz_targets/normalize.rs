//! `cargo fuzz run --sanitizer none normalize`: see `authgate::fuzzing::normalize`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate::fuzzing::normalize(data));
