//! Rebuilds the crate when a migration is added or changed: `sqlx::migrate!` embeds the
//! migration files at compile time, and cargo does not see a new file in that directory.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
