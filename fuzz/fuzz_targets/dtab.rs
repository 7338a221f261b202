//! Fuzz target: `switchyard::fuzzing::dtab` (see proxy/src/fuzzing.rs for what it asserts).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzzing::dtab(data));
