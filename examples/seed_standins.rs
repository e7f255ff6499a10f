//! Writes the stand-ins `scripts/demo` needs for what the seed pipeline downloads and this
//! machine cannot reach: a python:3.11-alpine-like base image (an OCI layout) and the signed
//! Alpine mirror that upgrades it (see `tests/it/support/seed_standins.rs`).
//!
//! ```text
//! cargo run --example seed_standins -- OUT_DIR APK_REPOSITORY [--multi-platform]
//! ```
//!
//! `APK_REPOSITORY` is what the base's `/etc/apk/repositories` lists: the URL the demo serves
//! `OUT_DIR/apk-mirror/alpine/v3.20/main` at. `--multi-platform` makes the base an index of a
//! linux/amd64 and a linux/arm64 image (the mirror then holds `x86_64/` and `aarch64/`), as
//! python:3.11-alpine is. Prints the base layout and the mirror root.

#[path = "../tests/it/support/apk_fixture.rs"]
mod apk_fixture;
#[path = "../tests/it/support/seed_standins.rs"]
mod seed_standins;

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), Some(repository)) = (args.next(), args.next()) else {
        eprintln!("usage: seed_standins OUT_DIR APK_REPOSITORY [--multi-platform]");
        std::process::exit(2);
    };
    let multi_platform = match (args.next(), args.next()) {
        (None, None) => false,
        (Some(flag), None) if flag == "--multi-platform" => true,
        _ => {
            eprintln!("usage: seed_standins OUT_DIR APK_REPOSITORY [--multi-platform]");
            std::process::exit(2);
        }
    };
    let out = PathBuf::from(out);
    let Some(repository) = repository.to_str() else {
        eprintln!("seed_standins: APK_REPOSITORY must be UTF-8");
        std::process::exit(2);
    };
    let standins = if multi_platform {
        seed_standins::write_multi_platform(&out, repository)
    } else {
        seed_standins::write(&out, repository)
    };
    println!("base_layout={}", standins.base_layout.display());
    println!("mirror_root={}", standins.mirror_root.display());
    println!("base_digest={}", standins.base_digest);
}
