//! The target's tag list against the one `packaging.tags` (pip's vendored copy) computed inside
//! a cp311 musl 1.2 x86_64 interpreter, kept in the shared research folder.
//!
//! The file lists `linux_x86_64` too, because it was generated natively; kiln's default
//! ([`LinuxTag::Exclude`]) drops it for cross targets, so both forms are checked.

use std::path::PathBuf;

use kiln::python::tags::{LinuxTag, Tags};
use kiln::python::target::Libc;

fn reference() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/research/python-seed/tags_cp311_musllinux_1_2_x86_64.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the reference tag list {} is missing ({e}); it lives in the shared research folder",
            path.display()
        )
    });
    let tags: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (_, tag) = l.split_once(' ').expect("`<index> <tag>` lines");
            tag.to_owned()
        })
        .collect();
    assert_eq!(tags.len(), 114, "the reference list has 114 tags");
    tags
}

fn ours(linux: LinuxTag) -> Vec<String> {
    Tags::new((3, 11), Libc::Musl { major: 1, minor: 2 }, "x86_64", linux)
        .iter()
        .map(|t| t.to_string())
        .collect()
}

#[test]
fn native_tag_list_matches_packaging_exactly() {
    assert_eq!(ours(LinuxTag::Include), reference());
}

#[test]
fn cross_tag_list_is_the_reference_without_linux_tags() {
    let want: Vec<String> = reference()
        .into_iter()
        .filter(|t| !t.ends_with("-linux_x86_64"))
        .collect();
    assert_eq!(want.len(), 89);
    assert_eq!(ours(LinuxTag::Exclude), want);
}
