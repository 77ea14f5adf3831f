//! A small, real file system that a test can fill: a size-limited tmpfs mounted on a fresh
//! temporary directory and unmounted when dropped. A full disk is then an honest `ENOSPC` from
//! the kernel, not a simulated error. Mounting needs root, which the test machines and CI have;
//! without it the test fails saying so rather than passing without having run.

use std::path::Path;
use std::process::Command;

/// A mounted tmpfs of a fixed size.
#[derive(Debug)]
pub struct SmallDisk {
    directory: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it: `6m`, `512k`).
    ///
    /// # Panics
    ///
    /// When the mount fails, for example because the test does not run as root.
    #[must_use]
    pub fn mount(size: &str) -> Self {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(directory.path())
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a {size} tmpfs failed ({status}): the disk-full tests need root, as CI has"
        );
        Self { directory }
    }

    /// The mount point.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.directory.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy, so a file still open (a killed server's database) does not keep it mounted.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.directory.path())
            .status();
    }
}
