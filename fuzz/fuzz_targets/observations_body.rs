//! The body of `POST /api/v1/metrics`: a batch of observations.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ripcord_server::fuzz::observations_body(data);
});
