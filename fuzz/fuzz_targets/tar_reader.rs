//! Fuzzes the layer reader: compression sniffing (plain, gzip, zstd), the checked tar walk
//! (names, links, PAX, whiteouts) and extraction into a Diff, as for a pulled base layer.
#![no_main]

use std::io::Read;
use std::ops::ControlFlow;
use std::sync::OnceLock;

use kiln::layer::LayerPath;
use kiln::layer::reader::{ReaderError, extract_to_diff, open_decompressed, read_entries};
use libfuzzer_sys::fuzz_target;

/// Decompressed bytes read per input: a small compressed input may expand a lot (a bomb costs
/// only time here, and kiln streams layers with constant memory anyway).
const MAX_EXPANDED: u64 = 16 * 1024 * 1024;

fn scratch() -> &'static tempfile::TempDir {
    static SCRATCH: OnceLock<tempfile::TempDir> = OnceLock::new();
    SCRATCH.get_or_init(|| tempfile::tempdir().expect("a scratch directory for the fuzz target"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok((_, reader)) = open_decompressed(data) {
        let _ = read_entries::<_, ReaderError, _>(
            reader.take(MAX_EXPANDED),
            "fuzz.tar",
            |entry, content| {
                let _ = kiln::layer::reader::whiteout_of(&entry.path);
                let _ = kiln::layer::reader::is_aufs_meta(&entry.path);
                let mut sink = Vec::new();
                let _ = content.take(64 * 1024).read_to_end(&mut sink);
                Ok(ControlFlow::Continue(()))
            },
        );
    }
    if let Ok((_, reader)) = open_decompressed(data) {
        let _ = extract_to_diff(
            reader.take(MAX_EXPANDED),
            "fuzz.tar",
            scratch().path(),
            &LayerPath::root(),
        );
    }
});
