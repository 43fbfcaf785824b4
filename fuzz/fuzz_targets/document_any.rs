//! An imported flag document without a declared format: JSON or YAML by its first character.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ripcord_server::fuzz::document_any(data);
});
