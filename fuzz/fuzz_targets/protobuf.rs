//! A gRPC request message of each call, decoded, with its context built.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ripcord_server::fuzz::protobuf(data);
});
