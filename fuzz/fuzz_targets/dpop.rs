//! `cargo fuzz run --sanitizer none dpop`: see `authgate_fuzz::dpop`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| authgate_fuzz::dpop(data));
