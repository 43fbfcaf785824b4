//! The body of an OFREP evaluation request.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ripcord_server::fuzz::ofrep_body(data);
});
