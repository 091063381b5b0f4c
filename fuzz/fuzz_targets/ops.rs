#![no_main]
//! libFuzzer driver; the logic and its invariants are in `centering_fuzz::ops`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| centering_fuzz::ops(data));
