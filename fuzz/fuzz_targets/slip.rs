//! `remoteproxy::fuzzing::slip` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| remoteproxy::fuzzing::slip(data));
