#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    retrace_replay_tests::fuzzing::http_request(data);
});
