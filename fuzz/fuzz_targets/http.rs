#![no_main]
// The check lives in exbind_server::fuzzing, shared with the corpus replay test.
use std::sync::atomic::{AtomicU64, Ordering};

/// Inputs between two lines of what the target reached.
const REPORT_EVERY: u64 = 100_000;
static INPUTS: AtomicU64 = AtomicU64::new(0);

extern "C" {
    fn atexit(f: extern "C" fn()) -> i32;
}

extern "C" fn report_at_exit() {
    eprintln!("{}", exbind_server::fuzzing::http_report());
}

libfuzzer_sys::fuzz_target!(
    init: {
        // libFuzzer ends the run with exit(): the closing line of the successes reached.
        // SAFETY: registers a function that takes no arguments and only prints.
        unsafe { atexit(report_at_exit) };
    },
    |data: &[u8]| {
        exbind_server::fuzzing::http(data);
        if INPUTS.fetch_add(1, Ordering::Relaxed) % REPORT_EVERY == REPORT_EVERY - 1 {
            eprintln!("{}", exbind_server::fuzzing::http_report());
        }
    }
);
