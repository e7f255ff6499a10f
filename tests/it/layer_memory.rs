//! Streaming test: writing a 300 MB layer keeps memory flat. Alone in a process of its own (a
//! child of the test binary) so that the process's peak RSS (VmHWM) reflects only this layer.

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};

use kiln::layer::{self, Compression, Diff, Entry, EntryKind, FileContent, LayerPath, Metadata};
use kiln::store::Store;

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_300_mb_file_does_not_blow_up_memory() {
    if !crate::support::alone_in_own_process(
        "layer_memory::a_300_mb_file_does_not_blow_up_memory",
        &[],
    ) {
        return;
    }
    const SIZE: u64 = 300 * 1000 * 1000;
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("big.bin");
    // Sparse-ish: mostly holes, with a 64 KiB stripe of data every 8 MiB.
    let mut file = std::fs::File::create(&host).unwrap();
    file.set_len(SIZE).unwrap();
    let stripe: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut offset = 0;
    while offset + stripe.len() as u64 <= SIZE {
        file.seek(SeekFrom::Start(offset)).unwrap();
        file.write_all(&stripe).unwrap();
        offset += 8 * 1024 * 1024;
    }
    drop(file);

    let mut diff = Diff::new();
    diff.insert(
        LayerPath::new("big.bin").unwrap(),
        Entry {
            kind: EntryKind::File(FileContent::HostFile {
                path: host,
                size: SIZE,
                stamp: None,
            }),
            meta: Metadata {
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
                xattrs: BTreeMap::new(),
            },
        },
    );
    let store = Store::open(&dir.path().join("store")).unwrap();
    let before = peak_rss_kib();
    for compression in [
        Compression::Gzip { level: 6 },
        Compression::Zstd { level: 3 },
    ] {
        let options = layer::WriteOptions {
            compression,
            source_date_epoch: 0,
            threads: 2,
        };
        let layer = layer::write(&diff, &store, &options).unwrap();
        assert!(layer.size > 0);
    }
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    assert!(
        grown_mib < 80,
        "peak RSS grew by {grown_mib} MiB while streaming 300 MB"
    );
}
