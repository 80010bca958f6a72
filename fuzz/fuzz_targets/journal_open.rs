#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    retrace_replay_tests::fuzzing::journal_open(data);
});
