//! `cargo fuzz run --sanitizer none config`: see `authgate::fuzzing::config`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate::fuzzing::config(data));
