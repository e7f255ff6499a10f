//! The database index (`DIR/.kiln/index`): what `kiln scan` needs from every file of a
//! database directory, grouped by package name behind an offset table, so that a scan reads
//! the table and the few groups its image's names need instead of opening every file (OSV's
//! exports hold one file per advisory, tens of thousands of them).
//!
//! `kiln db index DIR` writes it, and `kiln db fetch` after each fetch, atomically (a temporary
//! file renamed into place, in a directory of its own so that writing it changes none of the
//! database's directories). It records the database's directories (modification and change
//! times) and files (size, modification and change times). A scan stats them without reading
//! them: when no directory changed, no file was added or removed and the walk is skipped;
//! then every file is compared. An index that no longer matches is refused, naming the file
//! added, removed or changed, rather than report from stale data. The change time cannot be
//! set back, so a file rewritten with its old size and modification time is caught too; the
//! price is that a copy of the directory (new change times) must be indexed again. Times
//! advance in clock ticks, so the index is only written once every recorded change time is
//! older than the tick it started in: a change made while indexing gets a later time.
//!
//! Format, version 1: two text lines, the directory and file listings and the name table as
//! text lines, then the groups as JSON.
//! ```text
//! kiln vulnerability database index 1
//! {"directories":D,"files":F,"names":N,"directories_bytes":DB,"listing_bytes":L,"table_bytes":T,"body_bytes":B,...}
//! MTIME CTIME PATH               D lines: directories, `.` for DIR; times as SECONDS.NANOSECONDS
//! SIZE MTIME CTIME PATH          F lines: files, PATH relative to DIR
//! ECOSYSTEM OFFSET LENGTH NAME   N lines: where NAME's group is in the body
//! [ENTRY, ...][ENTRY, ...]...    the groups (B bytes), each a JSON array
//! ```
//!
//! [`write()`] (in `write.rs`) writes it, `load` (in `read.rs`) reads it, both through the
//! records of `format.rs` and the stamps of `freshness.rs`.

mod format;
mod freshness;
mod read;
mod write;

pub use super::files::INDEX_DIR;
pub(super) use read::load;
pub use write::{Written, write};

/// The index file in [`INDEX_DIR`].
pub const INDEX_FILE: &str = "index";

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::scan::{Database, ScanError, Wanted};

    fn write_file(path: &Path, content: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn fixture(dir: &Path) {
        write_file(
            &dir.join("alpine/v3.20/main.json"),
            r#"{"distroversion": "v3.20", "packages": [
                {"pkg": {"name": "openssl", "secfixes": {"3.3.2-r1": ["CVE-2 CVE-3"], "0": ["CVE-4"]}}},
                {"pkg": {"name": "musl"}}]}"#,
        );
        write_file(
            &dir.join("osv/PYSEC-1.json"),
            r#"{"id": "PYSEC-1", "aliases": ["CVE-1"], "summary": "s\u00e9",
                "database_specific": {"severity": "MODERATE"},
                "affected": [{"package": {"ecosystem": "PyPI", "name": "Zope.Interface"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "6.4.post1"}]},
                              {"type": "ECOSYSTEM", "events": [{"introduced": "7.0"}, {"last_affected": "7.1"}]}],
                   "versions": ["6.0"]},
                  {"package": {"ecosystem": "Debian:12", "name": "glibc"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u4"}]}]}]}"#,
        );
        write_file(
            &dir.join("osv/PYSEC-2.json"),
            r#"{"id": "PYSEC-2", "withdrawn": "2024-01-01T00:00:00Z", "affected": []}"#,
        );
    }

    #[test]
    fn the_index_holds_what_the_files_hold() {
        let temp = tempfile::tempdir().unwrap();
        fixture(temp.path());
        let from_files = Database::load(temp.path(), &Wanted::everything()).unwrap();
        let written = write(temp.path()).unwrap();
        assert_eq!((written.files, written.names, written.entries), (3, 3, 3));
        let from_index = load(temp.path(), &Wanted::everything())
            .unwrap()
            .expect("the index is read");
        assert_eq!(
            format!("{:?}", from_index.entries),
            format!("{:?}", from_files.entries)
        );
        assert_eq!(from_index.alpine_branches, from_files.alpine_branches);
        assert_eq!(from_index.ecosystems, from_files.ecosystems);
        let through_load = Database::load(temp.path(), &Wanted::everything()).unwrap();
        assert_eq!(through_load.files, from_files.files);
        assert_eq!(
            through_load.digest().unwrap().hex(),
            from_files.digest().unwrap().hex()
        );
    }

    #[test]
    fn a_changed_added_or_removed_file_makes_the_index_stale() {
        let temp = tempfile::tempdir().unwrap();
        fixture(temp.path());
        write(temp.path()).unwrap();
        let stale = |what: &str| {
            let err = Database::load(temp.path(), &Wanted::everything()).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, ScanError::StaleIndex { .. }) && message.contains(what),
                "{message}"
            );
            assert!(message.contains("kiln db index"), "{message}");
            write(temp.path()).unwrap();
            Database::load(temp.path(), &Wanted::everything()).unwrap();
        };
        write_file(
            &temp.path().join("osv/PYSEC-3.json"),
            r#"{"id": "PYSEC-3", "withdrawn": "2024-01-01T00:00:00Z"}"#,
        );
        stale("`osv/PYSEC-3.json` was added");
        std::fs::remove_file(temp.path().join("osv/PYSEC-3.json")).unwrap();
        stale("`osv/PYSEC-3.json` was removed");
        // Same size, same modification time, right after indexing: the change time tells.
        let path = temp.path().join("osv/PYSEC-2.json");
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("2024-01-01", "2024-01-02")).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        stale("`osv/PYSEC-2.json` changed");
    }

    #[test]
    fn a_malformed_index_is_named() {
        let temp = tempfile::tempdir().unwrap();
        fixture(temp.path());
        let written = write(temp.path()).unwrap();
        let good = std::fs::read(&written.path).unwrap();
        let mut cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not an index\n".to_vec(), "does not start with"),
            (
                String::from_utf8(good.clone())
                    .unwrap()
                    .replacen("index 1\n", "index 9\n", 1)
                    .into_bytes(),
                "format version `9`",
            ),
            (good[..good.len() - 3].to_vec(), "truncated"),
        ];
        let text = String::from_utf8(good.clone()).unwrap();
        let table_line = text.lines().find(|l| l.starts_with("PyPI ")).unwrap();
        cases.push((
            text.replacen(table_line, &table_line.replacen(' ', "_", 1), 1)
                .into_bytes(),
            "name table line",
        ));
        let body_at = text.find("[{").unwrap();
        let mut garbled = good.clone();
        garbled[body_at + 2] = b'#';
        cases.push((garbled, "the group of"));
        for (bytes, expected) in cases {
            std::fs::write(&written.path, &bytes).unwrap();
            let err = load(temp.path(), &Wanted::everything()).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, ScanError::BadIndex { .. })
                    && message.contains(expected)
                    && message.contains(".kiln/index"),
                "{expected}: {message}"
            );
        }
    }
}
