//! `remoteproxy::fuzzing::json_stream` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| remoteproxy::fuzzing::json_stream(data));
