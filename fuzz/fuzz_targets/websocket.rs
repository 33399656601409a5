//! `remoteproxy::fuzzing::websocket` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| remoteproxy::fuzzing::websocket(data));
