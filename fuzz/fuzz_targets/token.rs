#![no_main]
// The check lives in exbind_server::fuzzing, shared with the corpus replay test.
libfuzzer_sys::fuzz_target!(|data: &[u8]| exbind_server::fuzzing::token(data));
