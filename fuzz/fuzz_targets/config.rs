//! `remoteproxy::fuzzing::config` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| remoteproxy::fuzzing::config(data));
