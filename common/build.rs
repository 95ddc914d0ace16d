//! Generates the cluster's gRPC types from `proto/` with protox, so no system `protoc`
//! is needed. The encoded descriptor set is kept too: server reflection serves it and
//! the authorization table is checked against every method it names.

use std::{env, fs, path::PathBuf};

const PROTOS: &[&str] = &[
    "objects.proto",
    "ca.proto",
    "dispatcher.proto",
    "raft.proto",
    "control.proto",
    "scheduler.proto",
    "node.proto",
    "store.proto",
    "unlock.proto",
    "node_state.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    for p in PROTOS {
        println!("cargo:rerun-if-changed={}", proto_dir.join(p).display());
    }
    let fds = protox::compile(PROTOS, [&proto_dir])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out.join("lnswarm_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::SmallBufferCodec")
        .compile_fds(fds)?;
    Ok(())
}
