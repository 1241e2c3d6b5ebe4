//! Control groups, on cgroup v2 (unified) and v1 (hybrid or legacy) hosts.
//!
//! Every pod gets a group, every container instance a leaf below it. The groups track
//! every process a container starts, so the runtime can kill all of them, detect OOM
//! kills, and find leftovers of a runtime that died.

use crate::errors::RuntimeError;
use std::fs;
use std::path::{Path, PathBuf};

/// Where cgroup hierarchies are mounted on almost every host.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";
/// v1 hierarchies used: memory for OOM accounting, pids for tracking and freezing-free kills.
const V1_CONTROLLERS: &[&str] = &["memory", "pids"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

#[derive(Clone, Debug)]
pub struct Cgroups {
    pub version: Version,
    /// Where the hierarchies are mounted: the unified hierarchy itself on v2, the
    /// directory holding one mount per controller on v1.
    root: PathBuf,
    /// Path below each hierarchy's root that holds this runtime's groups.
    base: PathBuf,
}

impl Cgroups {
    /// Detects the cgroup version at `root` (v2 if it is a unified hierarchy).
    pub fn detect(root: &Path, base: &Path) -> Result<Cgroups, RuntimeError> {
        let version = if root.join("cgroup.controllers").exists() {
            Version::V2
        } else if V1_CONTROLLERS
            .iter()
            .all(|c| root.join(c).join("cgroup.procs").exists())
        {
            Version::V1
        } else {
            return Err(RuntimeError::Unsupported(format!(
                "no usable cgroup hierarchy under {}: need cgroup v2, or v1 with the {} controllers mounted",
                root.display(),
                V1_CONTROLLERS.join(" and ")
            )));
        };
        Ok(Cgroups {
            version,
            root: root.to_path_buf(),
            base: base.to_path_buf(),
        })
    }

    /// Directories that make up one group (one per v1 hierarchy, one on v2).
    fn dirs(&self, group: &Path) -> Vec<PathBuf> {
        match self.version {
            Version::V2 => vec![self.root.join(&self.base).join(group)],
            Version::V1 => V1_CONTROLLERS
                .iter()
                .map(|c| self.root.join(c).join(&self.base).join(group))
                .collect(),
        }
    }

    pub fn create(&self, group: &Path) -> Result<(), RuntimeError> {
        for dir in self.dirs(group) {
            fs::create_dir_all(&dir)
                .map_err(|e| RuntimeError::io(format!("create cgroup {}", dir.display()), e))?;
        }
        Ok(())
    }

    /// The `cgroup.procs` files a new process writes "0" to, to join the group.
    pub fn procs_files(&self, group: &Path) -> Vec<PathBuf> {
        self.dirs(group)
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// Pids of every process in the group and its descendants.
    pub fn pids(&self, group: &Path) -> Vec<i32> {
        let mut pids = Vec::new();
        for dir in self.dirs(group) {
            collect_pids(&dir, &mut pids);
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILLs every process in the group and its descendants.
    pub fn kill_all(&self, group: &Path) {
        if self.version == Version::V2 {
            let kill = self.root.join(&self.base).join(group).join("cgroup.kill");
            if fs::write(&kill, "1").is_ok() {
                return;
            }
        }
        for pid in self.pids(group) {
            // SAFETY: kill(2) with a pid read from the group; ESRCH is harmless.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    /// Removes the group and its descendants once their processes are gone; retries
    /// briefly because the kernel removes dead tasks asynchronously.
    pub fn remove(&self, group: &Path) {
        for dir in self.dirs(group) {
            for _ in 0..200 {
                if !dir.exists() || remove_tree(&dir) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }

    /// How many times the kernel OOM-killed a process of the group.
    pub fn oom_kills(&self, group: &Path) -> u64 {
        let (file, key) = match self.version {
            Version::V2 => (
                self.root.join(&self.base).join(group).join("memory.events"),
                "oom_kill",
            ),
            Version::V1 => (
                self.root
                    .join("memory")
                    .join(&self.base)
                    .join(group)
                    .join("memory.oom_control"),
                "oom_kill",
            ),
        };
        fs::read_to_string(file)
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|line| line.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
            })
            .unwrap_or(0)
    }

    /// Subgroups directly below `group` (e.g. the runtimes under the base).
    pub fn children(&self, group: &Path) -> Vec<String> {
        let Some(dir) = self.dirs(group).into_iter().next() else {
            return Vec::new();
        };
        fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn collect_pids(dir: &Path, pids: &mut Vec<i32>) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.filter_map(|e| e.ok()) {
            if entry.path().is_dir() {
                collect_pids(&entry.path(), pids);
            }
        }
    }
}

/// rmdir depth-first; cgroup directories cannot be removed with their files.
fn remove_tree(dir: &Path) -> bool {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.filter_map(|e| e.ok()) {
            if entry.path().is_dir() {
                remove_tree(&entry.path());
            }
        }
    }
    fs::remove_dir(dir).is_ok()
}
