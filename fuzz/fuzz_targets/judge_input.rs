//! The body of `POST /api/v1/judge`, read and judged.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ripcord_server::fuzz::judge_input(data);
});
