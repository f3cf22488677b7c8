//! `cargo fuzz run --sanitizer none bearer`: see `authgate_fuzz::bearer`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate_fuzz::bearer(data));
