//! Reading `/etc/passwd` and `/etc/group` the way musl's `getpwent`/`getgrent` do: the one
//! reader of these files in kiln, used by COPY `--chown`, the users emulation, apk's owners,
//! the sandbox's USER and pip's RUN user.
//!
//! [`parse_passwd`] and [`parse_group`] take the file text and return its well-formed entries in
//! file order; lines with too few fields or non-numeric ids are skipped, as libc skips them.
//! [`read_etc`] reads such a file from an [`FsView`] (symlinks resolved inside the root); a
//! missing file reads as `None`. [`read_passwd`] and [`read_group`] do both for an image's
//! files; a missing file has no entries.

use crate::layer::LayerPath;
use crate::rootfs::{FsView, ViewError};

/// One line of /etc/passwd: `name:password:uid:gid:gecos:home:shell`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// Password field (`x` when the hash lives in /etc/shadow).
    pub password: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// GECOS (full name, ...).
    pub gecos: String,
    /// Home directory.
    pub home: String,
    /// Login shell (the rest of the line, `:` included, as musl reads it).
    pub shell: String,
}

/// One line of /etc/group: `name:password:gid:member,member`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Password field.
    pub password: String,
    /// Group id.
    pub gid: u32,
    /// Supplementary members (empty names dropped).
    pub members: Vec<String>,
}

/// The well-formed entries of a passwd file, in order.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(7, ':');
            let name = fields.next()?;
            let password = fields.next()?;
            let uid = fields.next()?.parse().ok()?;
            let gid = fields.next()?.parse().ok()?;
            let gecos = fields.next()?;
            let home = fields.next()?;
            let shell = fields.next()?;
            Some(PasswdEntry {
                name: name.to_owned(),
                password: password.to_owned(),
                uid,
                gid,
                gecos: gecos.to_owned(),
                home: home.to_owned(),
                shell: shell.to_owned(),
            })
        })
        .collect()
}

/// The well-formed entries of a group file, in order.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(4, ':');
            let name = fields.next()?;
            let password = fields.next()?;
            let gid = fields.next()?.parse().ok()?;
            let members = fields.next()?;
            Some(GroupEntry {
                name: name.to_owned(),
                password: password.to_owned(),
                gid,
                members: members
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

/// Reads `path` (e.g. `etc/passwd`) from `view`, following symlinks inside the root; `None`
/// when it does not exist (or a component is not a directory).
pub fn read_etc(view: &dyn FsView, path: &LayerPath) -> Result<Option<Vec<u8>>, ViewError> {
    match view.read_file(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(ViewError::NotFound(_) | ViewError::NotADirectory(_)) => Ok(None),
        Err(other) => Err(other),
    }
}

/// Reading an image's /etc file failed.
#[derive(Debug, thiserror::Error)]
#[error("failed to read `{path}`")]
pub struct EtcReadError {
    /// The file (`/etc/passwd`).
    pub path: String,
    /// The cause.
    #[source]
    pub source: ViewError,
}

/// The entries of `view`'s `/etc/passwd` (none when it is missing), invalid UTF-8 replaced.
pub fn read_passwd(view: &dyn FsView) -> Result<Vec<PasswdEntry>, EtcReadError> {
    Ok(parse_passwd(&read_text(view, "etc/passwd")?))
}

/// The entries of `view`'s `/etc/group` (none when it is missing), invalid UTF-8 replaced.
pub fn read_group(view: &dyn FsView) -> Result<Vec<GroupEntry>, EtcReadError> {
    Ok(parse_group(&read_text(view, "etc/group")?))
}

fn read_text(view: &dyn FsView, path: &str) -> Result<String, EtcReadError> {
    let path = LayerPath::new(path).unwrap_or_else(|_| LayerPath::root());
    match read_etc(view, &path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()),
        Err(source) => Err(EtcReadError {
            path: path.absolute(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines() {
        let text = "root:x:0:0:root:/root:/bin/sh\nbad line\nnoid:x:a:0:::\n\
                    odd:x:5:6:g:/h:/bin/sh:extra\nshort:x:1:1\n";
        let entries = parse_passwd(text);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["root", "odd"]);
        assert_eq!(entries[1].shell, "/bin/sh:extra");
        assert_eq!((entries[1].uid, entries[1].gid), (5, 6));
    }

    #[test]
    fn group_lines() {
        let text = "root:x:0:root\nwheel:x:10:root,adm,\nnomembers:x:20:\nbroken:x:\n";
        let groups = parse_group(text);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[1].members, ["root", "adm"]);
        assert!(groups[2].members.is_empty());
    }

    #[test]
    fn an_image_without_the_files_has_no_entries() {
        use crate::layer::{Diff, Entry, EntryKind, FileContent, Metadata};
        use crate::rootfs::MemFs;
        let meta = Metadata {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Default::default(),
        };
        let empty = MemFs::new();
        assert!(read_passwd(&empty).expect("missing is empty").is_empty());
        assert!(read_group(&empty).expect("missing is empty").is_empty());
        let mut diff = Diff::new();
        let text: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n\xff";
        diff.insert(
            LayerPath::new("etc/passwd").expect("path"),
            Entry {
                kind: EntryKind::File(FileContent::Bytes(text.into())),
                meta: meta.clone(),
            },
        );
        diff.insert(
            LayerPath::new("etc/group").expect("path"),
            Entry {
                kind: EntryKind::Dir,
                meta,
            },
        );
        let fs = MemFs::from_diff(&diff);
        assert_eq!(read_passwd(&fs).expect("readable")[0].name, "root");
        // A directory in its place reads as a missing file.
        assert!(read_group(&fs).expect("readable").is_empty());
    }
}
