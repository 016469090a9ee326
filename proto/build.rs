//! Generates the Rust types for the `.proto` contract. A vendored `protoc` is used unless `PROTOC`
//! is set (or `NO_VENDORED_PROTOC` asks for the system one), so a fresh machine needs nothing extra.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=PROTOC");
    println!("cargo:rerun-if-env-changed=NO_VENDORED_PROTOC");
    println!("cargo:rerun-if-changed=tollgate");
    let mut config = tonic_prost_build::Config::new();
    if std::env::var_os("PROTOC").is_none() && std::env::var_os("NO_VENDORED_PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    config.bytes(["."]);
    tonic_prost_build::configure().compile_with_config(
        config,
        &[
            "tollgate/config/v1/config.proto",
            "tollgate/usage/v1/usage.proto",
        ],
        &["."],
    )?;
    Ok(())
}
