#![no_main]
//! libFuzzer driver; the logic and its invariants are in `centering_fuzz::params`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| centering_fuzz::params(data));
