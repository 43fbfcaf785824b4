//! An imported flag document read as JSON (`Content-Type: application/json`), compiled and evaluated.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ripcord_server::fuzz::document_json(data);
});
