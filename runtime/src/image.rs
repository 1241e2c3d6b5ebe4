//! Local images: read-only root filesystems built on this machine.
//!
//! There is no registry: an image is a directory that containers overlay. The agent
//! image holds the agent binary and, when the binary is dynamically linked, the shared
//! libraries it needs, at the paths the dynamic loader looks for them.

use crate::errors::RuntimeError;
use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where the agent sits inside its image.
pub const AGENT_PATH_IN_IMAGE: &str = "/podcheck-agent";

/// Builds (once per binary content) the agent's image under `images_dir` and returns the
/// image root.
pub fn build_agent_image(agent: &Path, images_dir: &Path) -> Result<PathBuf, RuntimeError> {
    let bytes = fs::read(agent)
        .map_err(|e| RuntimeError::io(format!("read the agent binary {}", agent.display()), e))?;
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    let root = images_dir.join(format!("agent-{:016x}", hasher.finish()));
    let installed = |root: &Path| {
        root.join(".complete").exists()
            && root
                .join(AGENT_PATH_IN_IMAGE.trim_start_matches('/'))
                .is_file()
    };
    if installed(&root) {
        return Ok(root);
    }
    // An image left half-built (by an older runtime's race) is built again.
    if root.exists() {
        let _ = fs::remove_dir_all(&root);
    }
    // One staging directory per build, also within a process: runtimes started at once
    // (tests do) would otherwise wipe each other's half-built image.
    static BUILDS: AtomicU64 = AtomicU64::new(0);
    let staging = images_dir.join(format!(
        ".staging-{}-{}",
        std::process::id(),
        BUILDS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)
        .map_err(|e| RuntimeError::io(format!("create {}", staging.display()), e))?;
    let target = staging.join(AGENT_PATH_IN_IMAGE.trim_start_matches('/'));
    fs::write(&target, &bytes)
        .map_err(|e| RuntimeError::io(format!("write {}", target.display()), e))?;
    set_mode(&target, 0o755)?;
    for library in shared_libraries(agent)? {
        let inside = staging.join(library.strip_prefix("/").unwrap_or(&library));
        if let Some(parent) = inside.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| RuntimeError::io(format!("create {}", parent.display()), e))?;
        }
        fs::copy(&library, &inside).map_err(|e| {
            RuntimeError::io(
                format!("copy {} into the agent image", library.display()),
                e,
            )
        })?;
        set_mode(&inside, 0o755)?;
    }
    for dir in ["dev", "proc", "tmp", "podcheck-state"] {
        fs::create_dir_all(staging.join(dir))
            .map_err(|e| RuntimeError::io("lay out the agent image", e))?;
    }
    fs::write(staging.join(".complete"), b"")
        .map_err(|e| RuntimeError::io("seal the agent image", e))?;
    match fs::rename(&staging, &root) {
        Ok(()) => Ok(root),
        // Another runtime built the same image meanwhile.
        Err(_) if installed(&root) => {
            let _ = fs::remove_dir_all(&staging);
            Ok(root)
        }
        Err(e) => Err(RuntimeError::io(
            format!("install the agent image at {}", root.display()),
            e,
        )),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| RuntimeError::io(format!("chmod {}", path.display()), e))
}

/// The shared objects a dynamically linked binary loads, as `ldd` resolves them; none for
/// a static binary.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, RuntimeError> {
    let output = match Command::new("ldd").arg(binary).output() {
        Ok(output) => output,
        Err(e) => {
            return Err(RuntimeError::io(
                "run ldd to find the agent's shared libraries",
                e,
            ))
        }
    };
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    let mut libraries = Vec::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libraries.push(PathBuf::from(path));
        }
    }
    Ok(libraries)
}
