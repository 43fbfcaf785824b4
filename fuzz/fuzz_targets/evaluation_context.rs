//! An evaluation context: a JSON object of attributes, checked and built.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ripcord_server::fuzz::evaluation_context(data);
});
