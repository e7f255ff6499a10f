//! Layer compressors: block-parallel gzip and multi-threaded zstd, each hashing the
//! uncompressed stream (the diffID) on the way.
//!
//! # gzip: compressed in parallel, byte-identical for any thread count
//!
//! [`ParallelGzipEncoder`] cuts the tar stream into [`GZIP_BLOCK_SIZE`] blocks and hands them
//! round-robin to `threads` workers; one output thread takes the compressed blocks back in
//! order, writes them, and hashes the uncompressed blocks (the diffID) off the tar-producing
//! thread. Every block's bytes depend only on its data (and, for zlib-rs, the previous 32 KiB
//! and whether it is last), so the output is byte-identical for any number of threads: digests
//! never depend on the machine. They do depend on the engine and its version, which Cargo.lock
//! pins. Two engines ([`GzipEngine`]):
//!
//! * **libdeflate** (kiln's default, `layer::GZIP_ENGINE`): each block becomes a complete gzip
//!   member (header without name, mtime 0), so the layer is a **multi-member** gzip stream.
//!   RFC 1952 (section 2.2) defines a gzip file as a series of members, and `gzip -t`, Go's
//!   compress/gzip (and so containerd, Docker, podman), Python's gzip and flate2's
//!   `MultiGzDecoder` read it as one stream; a decoder that stops after the first member
//!   (flate2's plain `GzDecoder`) would see only the first 1 MiB. libdeflate cannot sync-flush
//!   or take a dictionary, which is why it cannot make a single member; per block it is
//!   ~1.3x faster than zlib-rs at the same level, and denser.
//! * **zlib-rs** (through flate2): raw deflate per block, primed with the previous block's last
//!   32 KiB as the dictionary (the ratio of one continuous stream, as pigz does), ended with a
//!   sync flush (byte-aligned, non-final) except the last block, which is finished; the output
//!   thread writes one fixed gzip header (no name, mtime 0, OS 255), combines the blocks'
//!   CRC-32s (`crc32fast::Hasher::combine`) and writes the trailer: ONE gzip member.
//!
//! Memory stays flat: at most a couple of blocks are queued per worker, whatever the layer
//! size.
//!
//! # zstd
//!
//! [`zstd`]'s streaming encoder with `multithread(n)`, n >= 1 always: zstdmt's output does not
//! depend on n (>= 1) but does differ from the single-threaded mode, so never using mode 0
//! keeps digests machine-independent.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use flate2::{Compress, FlushCompress, Status};

use crate::digest::{Digest, Hasher};

/// Uncompressed bytes per gzip block: big enough that the per-block sync flush costs nothing
/// measurable, small enough that a few blocks per worker keep memory at a few MiB.
pub const GZIP_BLOCK_SIZE: usize = 1024 * 1024;
/// Deflate's window: the dictionary each block is primed with.
const DICTIONARY_SIZE: usize = 32 * 1024;
/// Blocks waiting for (and coming back from) each worker.
const QUEUE_DEPTH: usize = 2;
/// gzip header: magic, CM=deflate, no flags, mtime 0, no extra flags, OS 255 (unknown).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// What an encoder hands back when the stream is finished.
pub struct Finished<W> {
    /// The output writer, with every compressed byte written to it.
    pub out: W,
    /// sha256 of the uncompressed stream (a layer's diffID).
    pub uncompressed_digest: Digest,
    /// Length of the uncompressed stream.
    pub uncompressed_len: u64,
}

struct Job {
    data: Vec<u8>,
    dictionary: Vec<u8>,
    last: bool,
}

struct Compressed {
    data: Vec<u8>,
    compressed: Vec<u8>,
    /// The block's CRC-32, for engines whose blocks share one member's trailer.
    crc: Option<crc32fast::Hasher>,
}

/// Which deflate engine compresses the blocks; each gives its own (deterministic) bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GzipEngine {
    /// zlib-rs raw deflate, each block primed with the previous 32 KiB and sync-flushed: the
    /// blocks join into ONE gzip member.
    ZlibRs,
    /// libdeflate: faster and denser per level, but it cannot sync-flush nor take a
    /// dictionary, so every block is its own gzip member (a multi-member stream, RFC 1952
    /// section 2.2, which gzip, Go, containerd and Python all read as one stream).
    Libdeflate,
}

type OutputResult<W> = io::Result<(W, Hasher)>;

/// A block-parallel gzip encoder producing one standard gzip member (see the module doc).
pub struct ParallelGzipEncoder<W: Write + Send + 'static> {
    block: Vec<u8>,
    dictionary: Vec<u8>,
    workers: Vec<SyncSender<Job>>,
    worker_handles: Vec<JoinHandle<()>>,
    output: Option<JoinHandle<OutputResult<W>>>,
    next_worker: usize,
}

impl<W: Write + Send + 'static> ParallelGzipEncoder<W> {
    /// Starts `threads` (at least 1) compression workers at gzip `level` (clamped to 1-9) and
    /// an output thread writing to `out`.
    pub fn new(out: W, level: u32, threads: usize, engine: GzipEngine) -> ParallelGzipEncoder<W> {
        let level = level.clamp(1, 9);
        let threads = threads.max(1);
        let mut workers = Vec::with_capacity(threads);
        let mut worker_handles = Vec::with_capacity(threads);
        let mut results = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (job_tx, job_rx) = sync_channel::<Job>(QUEUE_DEPTH);
            let (done_tx, done_rx) = sync_channel::<io::Result<Compressed>>(QUEUE_DEPTH);
            worker_handles.push(std::thread::spawn(move || {
                compress_worker(engine, level, job_rx, done_tx)
            }));
            workers.push(job_tx);
            results.push(done_rx);
        }
        let output = std::thread::spawn(move || write_output(out, engine, results));
        ParallelGzipEncoder {
            block: Vec::with_capacity(GZIP_BLOCK_SIZE),
            dictionary: Vec::new(),
            workers,
            worker_handles,
            output: Some(output),
            next_worker: 0,
        }
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(
            &mut self.block,
            Vec::with_capacity(if last { 0 } else { GZIP_BLOCK_SIZE }),
        );
        let tail_start = data.len().saturating_sub(DICTIONARY_SIZE);
        let next_dictionary = data[tail_start..].to_vec();
        let job = Job {
            data,
            dictionary: std::mem::replace(&mut self.dictionary, next_dictionary),
            last,
        };
        let worker = self.next_worker;
        self.next_worker = (self.next_worker + 1) % self.workers.len();
        if self.workers[worker].send(job).is_err() {
            // The pipeline stopped: the output thread's result says why.
            return Err(self.shut_down().err().unwrap_or_else(|| {
                io::Error::other("the gzip pipeline stopped before the stream ended")
            }));
        }
        Ok(())
    }

    fn shut_down(&mut self) -> io::Result<(W, Hasher)> {
        self.workers.clear();
        for handle in self.worker_handles.drain(..) {
            if handle.join().is_err() {
                return Err(io::Error::other("a gzip worker thread panicked"));
            }
        }
        match self.output.take() {
            Some(handle) => handle
                .join()
                .map_err(|_| io::Error::other("the gzip output thread panicked"))?,
            None => Err(io::Error::other("the gzip pipeline was already shut down")),
        }
    }

    /// Compresses the last block, writes the gzip trailer and returns the output writer and
    /// the uncompressed stream's digest and length.
    pub fn finish(mut self) -> io::Result<Finished<W>> {
        self.dispatch(true)?;
        let (out, hasher) = self.shut_down()?;
        let (uncompressed_digest, uncompressed_len) = hasher.finish();
        Ok(Finished {
            out,
            uncompressed_digest,
            uncompressed_len,
        })
    }
}

impl<W: Write + Send + 'static> Write for ParallelGzipEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A full block is dispatched only once more data arrives, so the last block (sent by
        // `finish`) is never empty unless the whole stream is.
        if self.block.len() == GZIP_BLOCK_SIZE && !buf.is_empty() {
            self.dispatch(false)?;
        }
        let take = buf.len().min(GZIP_BLOCK_SIZE - self.block.len());
        self.block.extend_from_slice(&buf[..take]);
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for ParallelGzipEncoder<W> {
    fn drop(&mut self) {
        // Dropped without `finish` (an error elsewhere): stop the threads, discard the output.
        if self.output.is_some() {
            let _ = self.shut_down();
        }
    }
}

fn compress_worker(
    engine: GzipEngine,
    level: u32,
    jobs: Receiver<Job>,
    done: SyncSender<io::Result<Compressed>>,
) {
    let mut libdeflate = None;
    for job in jobs {
        let result = match engine {
            GzipEngine::ZlibRs => compress_block(level, &job).map(|compressed| {
                let mut crc = crc32fast::Hasher::new();
                crc.update(&job.data);
                Compressed {
                    data: job.data,
                    compressed,
                    crc: Some(crc),
                }
            }),
            GzipEngine::Libdeflate => {
                let compressor = libdeflate.get_or_insert_with(|| {
                    // `level` is clamped to 1-9, which libdeflate accepts.
                    let lvl = libdeflater::CompressionLvl::new(level as i32)
                        .unwrap_or_else(|_| libdeflater::CompressionLvl::default());
                    libdeflater::Compressor::new(lvl)
                });
                compress_member(compressor, &job.data).map(|compressed| Compressed {
                    data: job.data,
                    compressed,
                    crc: None,
                })
            }
        };
        let failed = result.is_err();
        if done.send(result).is_err() || failed {
            return;
        }
    }
}

/// Raw deflate of one block, primed with `job.dictionary`; sync-flushed, or finished if last.
///
/// Every block gets a fresh deflate state: a reused one (`Compress::reset`) was measured to give
/// different bytes for the same block (zlib-rs keeps some state across a reset), which would make
/// the output depend on which worker compressed which block, i.e. on the thread count.
fn compress_block(level: u32, job: &Job) -> io::Result<Vec<u8>> {
    let mut deflate = Compress::new(flate2::Compression::new(level), false);
    if !job.dictionary.is_empty() {
        deflate
            .set_dictionary(&job.dictionary)
            .map_err(|e| io::Error::other(format!("failed to set the deflate dictionary: {e}")))?;
    }
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let len = job.data.len();
    // deflateBound plus room for the sync marker.
    let mut out = Vec::with_capacity(len + (len >> 12) + (len >> 14) + 128);
    let start_in = deflate.total_in();
    loop {
        let consumed = (deflate.total_in() - start_in) as usize;
        let status = deflate
            .compress_vec(&job.data[consumed..], &mut out, flush)
            .map_err(|e| io::Error::other(format!("deflate failed: {e}")))?;
        let all_in = (deflate.total_in() - start_in) as usize == len;
        let room_left = out.len() < out.capacity();
        match status {
            Status::StreamEnd => break,
            Status::Ok | Status::BufError if all_in && room_left && !job.last => break,
            _ => out.reserve(64 * 1024),
        }
    }
    Ok(out)
}

/// One whole gzip member of `data` with libdeflate.
fn compress_member(compressor: &mut libdeflater::Compressor, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; compressor.gzip_compress_bound(data.len())];
    let len = compressor
        .gzip_compress(data, &mut out)
        .map_err(|e| io::Error::other(format!("libdeflate failed: {e}")))?;
    out.truncate(len);
    Ok(out)
}

fn write_output<W: Write>(
    mut out: W,
    engine: GzipEngine,
    results: Vec<Receiver<io::Result<Compressed>>>,
) -> io::Result<(W, Hasher)> {
    let mut uncompressed = Hasher::new();
    let mut crc = crc32fast::Hasher::new();
    let one_member = engine == GzipEngine::ZlibRs;
    if one_member {
        out.write_all(&GZIP_HEADER)?;
    }
    for index in 0.. {
        // Blocks went to the workers round-robin; a closed channel at the next position means
        // the stream has ended.
        let Ok(block) = results[index % results.len()].recv() else {
            break;
        };
        let block = block?;
        out.write_all(&block.compressed)?;
        uncompressed.update(&block.data);
        if let Some(block_crc) = &block.crc {
            crc.combine(block_crc);
        }
    }
    if one_member {
        // Trailer: CRC-32 and the length modulo 2^32, little-endian.
        out.write_all(&crc.finalize().to_le_bytes())?;
        out.write_all(&(uncompressed.len() as u32).to_le_bytes())?;
    }
    out.flush()?;
    Ok((out, uncompressed))
}

/// A zstd encoder (zstdmt, `threads` >= 1 workers) that hashes the uncompressed stream.
pub struct ZstdEncoder<W: Write> {
    encoder: zstd::stream::write::Encoder<'static, W>,
    uncompressed: Hasher,
}

impl<W: Write> ZstdEncoder<W> {
    /// A zstd stream at `level` with `threads` workers (at least 1, see the module doc).
    pub fn new(out: W, level: i32, threads: usize) -> io::Result<ZstdEncoder<W>> {
        let mut encoder = zstd::stream::write::Encoder::new(out, level)?;
        let workers = u32::try_from(threads.max(1)).unwrap_or(u32::MAX);
        encoder.multithread(workers)?;
        Ok(ZstdEncoder {
            encoder,
            uncompressed: Hasher::new(),
        })
    }

    /// Ends the zstd frame and returns the output and the uncompressed digest and length.
    pub fn finish(self) -> io::Result<Finished<W>> {
        let out = self.encoder.finish()?;
        let (uncompressed_digest, uncompressed_len) = self.uncompressed.finish();
        Ok(Finished {
            out,
            uncompressed_digest,
            uncompressed_len,
        })
    }
}

impl<W: Write> Write for ZstdEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.encoder.write(buf)?;
        self.uncompressed.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.encoder.flush()
    }
}

/// No compression: passes bytes through and hashes them.
pub struct PlainEncoder<W: Write> {
    out: W,
    uncompressed: Hasher,
}

impl<W: Write> PlainEncoder<W> {
    /// Wraps `out`.
    pub fn new(out: W) -> PlainEncoder<W> {
        PlainEncoder {
            out,
            uncompressed: Hasher::new(),
        }
    }

    /// Returns the output and the digest and length of what went through.
    pub fn finish(mut self) -> io::Result<Finished<W>> {
        self.out.flush()?;
        let (uncompressed_digest, uncompressed_len) = self.uncompressed.finish();
        Ok(Finished {
            out: self.out,
            uncompressed_digest,
            uncompressed_len,
        })
    }
}

impl<W: Write> Write for PlainEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.out.write(buf)?;
        self.uncompressed.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: a counter mixed into text.
        let mut data = Vec::with_capacity(len);
        let mut i = 0u64;
        while data.len() < len {
            data.extend_from_slice(
                format!("line {} value {}\n", i, i.wrapping_mul(2654435761) % 1000).as_bytes(),
            );
            i += 1;
        }
        data.truncate(len);
        data
    }

    fn gzip(data: &[u8], threads: usize, engine: GzipEngine) -> Vec<u8> {
        let mut encoder = ParallelGzipEncoder::new(Vec::new(), 6, threads, engine);
        encoder.write_all(data).unwrap();
        let finished = encoder.finish().unwrap();
        assert_eq!(finished.uncompressed_digest, Digest::of(data));
        finished.out
    }

    #[test]
    fn parallel_gzip_round_trips_and_ignores_thread_count() {
        for len in [
            0,
            1,
            GZIP_BLOCK_SIZE,
            GZIP_BLOCK_SIZE + 1,
            3 * GZIP_BLOCK_SIZE + 12345,
        ] {
            for engine in [GzipEngine::ZlibRs, GzipEngine::Libdeflate] {
                let data = sample(len);
                let one = gzip(&data, 1, engine);
                let mut decoded = Vec::new();
                flate2::read::MultiGzDecoder::new(&one[..])
                    .read_to_end(&mut decoded)
                    .unwrap();
                assert_eq!(decoded, data, "len {len}, {engine:?}");
                for threads in [2, 4] {
                    assert_eq!(
                        gzip(&data, threads, engine),
                        one,
                        "len {len}, threads {threads}"
                    );
                }
            }
        }
    }
}
