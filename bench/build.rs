//! Compiles the slice of etcd's v3 protocol the benchmark speaks, with protox,
//! so no system `protoc` is needed (the `etcd-client` crate requires one).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["proto/etcd.proto", "proto/v3lock.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
