//! Builds the podcheck-agent as a static binary, so every podcheck build (and every test
//! run, which cargo would not otherwise give a binary of another package) has the
//! workload that containers run. The nested cargo uses its own target directory, so it
//! never waits on the outer build's lock, and an explicit `--target`, so the static flag
//! does not reach proc-macros.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_owned()));
    let out_dir =
        PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| "target/agent".to_owned()));
    for path in [
        "agent/src",
        "agent/Cargo.toml",
        "wire/src",
        "wire/Cargo.toml",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            manifest_dir.join(path).display()
        );
    }
    println!("cargo:rerun-if-env-changed=PODCHECK_SKIP_AGENT_BUILD");
    if std::env::var_os("PODCHECK_SKIP_AGENT_BUILD").is_some() {
        return;
    }
    let target = std::env::var("TARGET").unwrap_or_else(|_| "x86_64-unknown-linux-gnu".to_owned());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let target_dir = out_dir.join("agent-build");
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "podcheck-agent",
            "--target",
            &target,
        ])
        .arg("--manifest-path")
        .arg(manifest_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            "-C target-feature=+crt-static",
        )
        .env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            "-C target-feature=+crt-static",
        )
        .status();
    match status {
        Ok(status) if status.success() => {
            let agent = target_dir.join(&target).join("release").join("podcheck-agent");
            println!("cargo:rustc-env=PODCHECK_AGENT_BUILT={}", agent.display());
        }
        Ok(status) => println!("cargo:warning=building the static podcheck-agent failed ({status}); set PODCHECK_AGENT"),
        Err(err) => println!("cargo:warning=cannot run cargo to build podcheck-agent: {err}; set PODCHECK_AGENT"),
    }
}
