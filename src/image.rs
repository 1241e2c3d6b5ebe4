//! `podcheck image build`: the agent as an OCI image, in the docker-archive format that
//! `podman load`, `ctr images import` and `kind load image-archive` all accept.
//!
//! FROM scratch: one layer holding the static agent and the directories containers
//! mount over. Every byte is deterministic (sorted entries, zero times, owner 0), so the
//! same agent binary always gives the same digests.

use sha2::{Digest, Sha256};
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("failed to {action}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to encode the {what}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

fn io_error(action: String) -> impl FnOnce(std::io::Error) -> ImageError {
    move |source| ImageError::Io { action, source }
}

fn encode_error(what: &'static str) -> impl FnOnce(serde_json::Error) -> ImageError {
    move |source| ImageError::Encode { what, source }
}

/// The reference every target gives the agent's containers.
pub const AGENT_IMAGE: &str = podcheck_runtime::AGENT_IMAGE;

#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub reference: String,
    /// sha256 of the image config: the image ID podman and docker show.
    pub config_digest: String,
    pub layer_digest: String,
    pub size: u64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn header(
    path: &str,
    size: u64,
    mode: u32,
    kind: tar::EntryType,
) -> Result<tar::Header, ImageError> {
    let mut header = tar::Header::new_ustar();
    header
        .set_path(path)
        .map_err(io_error(format!("name tar entry {path}")))?;
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(kind);
    header.set_cksum();
    Ok(header)
}

fn tar_bytes(entries: &[(String, Option<Vec<u8>>, u32)]) -> Result<Vec<u8>, ImageError> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content, mode) in entries {
        match content {
            Some(bytes) => {
                let header = header(path, bytes.len() as u64, *mode, tar::EntryType::Regular)?;
                builder.append(&header, bytes.as_slice())
            }
            None => {
                let header = header(path, 0, *mode, tar::EntryType::Directory)?;
                builder.append(&header, std::io::empty())
            }
        }
        .map_err(io_error(format!("write tar entry {path}")))?;
    }
    builder
        .into_inner()
        .map_err(io_error("finish a tar archive".to_owned()))
}

/// Builds the image archive of `agent` (a static binary) at `output`.
pub fn build_agent_archive(
    agent: &Path,
    output: &Path,
    reference: &str,
) -> Result<BuiltImage, ImageError> {
    let binary =
        std::fs::read(agent).map_err(io_error(format!("read the agent {}", agent.display())))?;
    let layer = tar_bytes(&[
        ("dev/".to_owned(), None, 0o755),
        ("podcheck-agent".to_owned(), Some(binary), 0o755),
        ("podcheck-state/".to_owned(), None, 0o777),
        ("proc/".to_owned(), None, 0o555),
        ("sys/".to_owned(), None, 0o555),
        ("tmp/".to_owned(), None, 0o1777),
    ])?;
    let layer_digest = sha256(&layer);
    let config = serde_json::json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Entrypoint": ["/podcheck-agent"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Labels": {"org.opencontainers.image.title": "podcheck-agent", "org.opencontainers.image.version": env!("CARGO_PKG_VERSION")}
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "podcheck image build"}]
    });
    let config = serde_json::to_vec(&config).map_err(encode_error("image config"))?;
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("{config_digest}.json"),
        "RepoTags": [reference],
        "Layers": [format!("{layer_digest}/layer.tar")],
    }]))
    .map_err(encode_error("manifest"))?;
    let repositories = {
        let (name, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
        serde_json::to_vec(&serde_json::json!({ name: { tag: layer_digest } }))
            .map_err(encode_error("repositories file"))?
    };
    let archive = tar_bytes(&[
        (format!("{config_digest}.json"), Some(config), 0o644),
        (format!("{layer_digest}/"), None, 0o755),
        (format!("{layer_digest}/layer.tar"), Some(layer), 0o644),
        ("manifest.json".to_owned(), Some(manifest), 0o644),
        ("repositories".to_owned(), Some(repositories), 0o644),
    ])?;
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(io_error(format!("create {}", parent.display())))?;
    }
    std::fs::write(output, &archive).map_err(io_error(format!("write {}", output.display())))?;
    Ok(BuiltImage {
        reference: reference.to_owned(),
        config_digest: format!("sha256:{config_digest}"),
        layer_digest: format!("sha256:{layer_digest}"),
        size: archive.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_are_reproducible_and_well_formed() {
        let dir = std::env::temp_dir().join(format!("podcheck-image-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let agent = dir.join("agent");
        std::fs::write(&agent, b"\x7fELF pretend agent").expect("agent");
        let first = build_agent_archive(&agent, &dir.join("a.tar"), AGENT_IMAGE).expect("build");
        let second = build_agent_archive(&agent, &dir.join("b.tar"), AGENT_IMAGE).expect("build");
        assert_eq!(first.config_digest, second.config_digest);
        let (a, b) = (
            std::fs::read(dir.join("a.tar")).expect("a"),
            std::fs::read(dir.join("b.tar")).expect("b"),
        );
        assert_eq!(a, b, "same agent, same bytes");
        let mut archive = tar::Archive::new(a.as_slice());
        let names: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        assert!(names.contains(&"manifest.json".to_owned()), "{names:?}");
        assert!(names.iter().any(|n| n.ends_with("/layer.tar")), "{names:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
