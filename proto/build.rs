//! Generates the gRPC code with protox (a protobuf compiler in Rust), so that building needs
//! no `protoc` on the machine.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "ripcord/v1/ripcord.proto",
    "flagd/evaluation/v1/evaluation.proto",
    "flagd/evaluation/v2/evaluation.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    // Served by gRPC reflection, so that tools such as grpcurl can list and call the API.
    std::fs::write(out_dir.join("descriptors.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .bytes(".ripcord.v1.WatchResponse")
        // prost's codec, but a request that is not protobuf is INVALID_ARGUMENT.
        .codec_path("crate::codec::Codec")
        .compile_fds(descriptors)?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }
    Ok(())
}
