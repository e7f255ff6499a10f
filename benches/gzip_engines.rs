//! Compares gzip engines and levels on one uncompressed layer tar, single-threaded, per
//! 1 MiB block (as the parallel layer writer compresses them): zlib-rs raw deflate primed with
//! the previous 32 KiB (kiln's choice: one gzip member) against libdeflate (no dictionary
//! support, so one gzip member per block). Prints MB/s of input per core and the output ratio.
//!
//! ```text
//! cargo run --release --example write_layer -- DIR --compression none --store STORE
//! cargo bench --bench gzip_engines -- STORE/blobs/sha256/<the tar blob>
//! ```

use std::time::Instant;

use flate2::{Compress, FlushCompress};

const BLOCK: usize = 1024 * 1024;
const WINDOW: usize = 32 * 1024;

fn zlib_rs(data: &[u8], level: u32) -> usize {
    let mut total = 0;
    let mut out = Vec::with_capacity(BLOCK + BLOCK / 8);
    for (index, block) in data.chunks(BLOCK).enumerate() {
        let mut deflate = Compress::new(flate2::Compression::new(level), false);
        if index > 0 {
            let start = index * BLOCK - WINDOW;
            deflate
                .set_dictionary(&data[start..index * BLOCK])
                .expect("dictionary");
        }
        out.clear();
        deflate
            .compress_vec(block, &mut out, FlushCompress::Sync)
            .expect("deflate");
        total += out.len();
    }
    total
}

fn libdeflate(data: &[u8], level: i32) -> usize {
    let lvl = libdeflater::CompressionLvl::new(level).expect("level");
    let mut compressor = libdeflater::Compressor::new(lvl);
    let mut out = vec![0u8; compressor.gzip_compress_bound(BLOCK)];
    let mut total = 0;
    for block in data.chunks(BLOCK) {
        total += compressor.gzip_compress(block, &mut out).expect("compress");
    }
    total
}

fn main() {
    let Some(path) = std::env::args().skip(1).find(|a| !a.starts_with("--")) else {
        eprintln!("usage: gzip_engines TAR_FILE");
        return;
    };
    let data = std::fs::read(&path).expect("read the tar");
    let mb = data.len() as f64 / 1e6;
    println!("input {} bytes", data.len());
    println!("| engine | level | MB/s per core | output bytes | ratio |");
    println!("|---|---|---|---|---|");
    for level in [4u32, 5, 6] {
        let start = Instant::now();
        let size = zlib_rs(&data, level);
        let secs = start.elapsed().as_secs_f64();
        println!(
            "| zlib-rs + dictionary (one member) | {level} | {:.0} | {size} | {:.4} |",
            mb / secs,
            size as f64 / data.len() as f64
        );
    }
    for level in [4i32, 5, 6, 7] {
        let start = Instant::now();
        let size = libdeflate(&data, level);
        let secs = start.elapsed().as_secs_f64();
        println!(
            "| libdeflate (member per block) | {level} | {:.0} | {size} | {:.4} |",
            mb / secs,
            size as f64 / data.len() as f64
        );
    }
}
