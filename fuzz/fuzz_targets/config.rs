//! Fuzz target: `switchyard::fuzzing::config` (see proxy/src/fuzzing.rs for what it asserts).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzzing::config(data));
