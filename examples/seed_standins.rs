//! Writes the stand-ins `scripts/demo` needs for what the seed pipeline downloads and this
//! machine cannot reach: a python:3.11-alpine-like base image (an OCI layout) and the signed
//! Alpine mirror that upgrades it (see `tests/it/support/seed_standins.rs`).
//!
//! ```text
//! cargo run --example seed_standins -- OUT_DIR APK_REPOSITORY
//! ```
//!
//! `APK_REPOSITORY` is what the base's `/etc/apk/repositories` lists: the URL the demo serves
//! `OUT_DIR/apk-mirror/alpine/v3.20/main` at. Prints the base layout and the mirror root.

#[path = "../tests/it/support/apk_fixture.rs"]
mod apk_fixture;
#[path = "../tests/it/support/seed_standins.rs"]
mod seed_standins;

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), Some(repository), None) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: seed_standins OUT_DIR APK_REPOSITORY");
        std::process::exit(2);
    };
    let out = PathBuf::from(out);
    let Some(repository) = repository.to_str() else {
        eprintln!("seed_standins: APK_REPOSITORY must be UTF-8");
        std::process::exit(2);
    };
    let standins = seed_standins::write(&out, repository);
    println!("base_layout={}", standins.base_layout.display());
    println!("mirror_root={}", standins.mirror_root.display());
    println!("base_digest={}", standins.base_digest);
}
