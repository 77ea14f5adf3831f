//! A small, real file system that a test can fill: a size-limited tmpfs mounted on a fresh
//! temporary directory and unmounted when dropped. A full disk is then an honest `ENOSPC` from
//! the kernel, not a simulated error. Mounting needs root, which the test machines and CI have;
//! without it the test fails saying so rather than passing without having run.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::Connection as _;
use sqlx::sqlite::SqliteConnection;

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

    /// Fills the disk until only `headroom` bytes are left, with one file whose removal gives
    /// the space back; returns that file.
    ///
    /// # Panics
    ///
    /// When the files cannot be written at all.
    #[must_use]
    pub fn fill_leaving(&self, headroom: usize) -> PathBuf {
        let reserve = self.path().join("reserve");
        std::fs::write(&reserve, vec![0_u8; headroom]).expect("writing the reserve");
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).expect("creating the filler");
        let chunk = vec![0_u8; 64 << 10];
        while file.write_all(&chunk).is_ok() {}
        drop(file);
        std::fs::remove_file(&reserve).expect("removing the reserve");
        filler
    }
}

/// `PRAGMA integrity_check` of the SQLite database at `database`: `"ok"` when it is sound.
///
/// # Panics
///
/// When the database cannot be opened or checked.
pub async fn sqlite_integrity_check(database: &Path) -> String {
    let mut connection = SqliteConnection::connect(&format!("sqlite://{}", database.display()))
        .await
        .expect("opening the database for the check");
    sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut connection)
        .await
        .expect("running integrity_check")
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
