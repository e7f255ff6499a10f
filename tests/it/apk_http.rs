//! `apk update && apk upgrade` from an HTTP mirror: the fixture's signed repository served over
//! HTTP on 127.0.0.1 gives the same layer as the same repository read as a directory; a second
//! run with the server stopped and `offline` comes entirely from the cache (packages by
//! checksum, the index by URL), also from a cache in the layout an older kiln wrote; a package
//! the mirror serves wrong is refused and not cached.

use crate::support::apk_fixture;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use apk_fixture::fixture;
use kiln::apk::{ApkOptions, run};
use kiln::rootfs::MemFs;
use kiln::steps::run::NativeCommand;

/// A tiny static file server for one directory, on 127.0.0.1, counting the requests it serves.
struct Mirror {
    url: String,
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Mirror {
    fn start(root: PathBuf, tamper: Option<String>) -> Mirror {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (served2, stop2) = (served.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: the tests make a few dozen requests at most.
            for _ in 0..20_000 {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap() <= 2 {
                        break;
                    }
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let file = root.join(path.trim_start_matches('/'));
                let mut stream = stream;
                match std::fs::read(&file) {
                    Ok(mut body) => {
                        if tamper.as_deref().is_some_and(|t| path.ends_with(t)) {
                            let last = body.len() - 1;
                            body[last] ^= 0xff;
                        }
                        served2.fetch_add(1, Ordering::SeqCst);
                        write!(
                            stream,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .unwrap();
                        stream.write_all(&body).unwrap();
                    }
                    Err(_) => {
                        write!(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
                    }
                }
            }
        });
        Mirror {
            url,
            served,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn commands() -> Vec<NativeCommand> {
    vec![
        NativeCommand::ApkUpdate,
        NativeCommand::ApkUpgrade {
            available: false,
            no_cache: false,
            update_cache: false,
            latest: false,
        },
    ]
}

fn options(repository: String, cache: &Path, offline: bool) -> ApkOptions {
    ApkOptions {
        repositories: Some(vec![repository]),
        cache_dir: Some(cache.to_owned()),
        offline,
        ..ApkOptions::default()
    }
}

#[test]
fn http_mirror_matches_the_directory_and_offline_uses_the_cache() {
    let fx = fixture();
    let lower = MemFs::from_diff(&fx.lower);
    let cache = tempfile::tempdir().unwrap();
    let from_dir = run(
        &commands(),
        &lower,
        &options(fx.repo.display().to_string(), cache.path(), false),
    )
    .unwrap();

    let mirror = Mirror::start(fx.repo.clone(), None);
    let from_http = run(
        &commands(),
        &lower,
        &options(mirror.url.clone(), cache.path(), false),
    )
    .unwrap();
    assert_eq!(
        from_http.diff, from_dir.diff,
        "the same layer from the mirror"
    );
    let served = mirror.served.load(Ordering::SeqCst);
    assert!(
        served >= 2,
        "the index and the packages came over HTTP ({served} requests)"
    );
    assert!(
        from_http
            .materials
            .iter()
            .all(|m| m.uri.starts_with(&mirror.url))
    );
    let url = mirror.url.clone();
    drop(mirror);

    let offline = run(
        &commands(),
        &lower,
        &options(url.clone(), cache.path(), true),
    )
    .unwrap();
    assert_eq!(offline.diff, from_dir.diff, "offline, from the cache alone");

    let empty = tempfile::tempdir().unwrap();
    let err = run(
        &commands(),
        &lower,
        &options(url.clone(), empty.path(), true),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("{url}/x86_64/APKINDEX.tar.gz")),
        "{err}"
    );
}

/// Rewrites the download cache in `dir` into the layout kiln used before it (indexes at
/// `indexes/<sha256 of URL>` with the URL in `<same>.url`, packages at `packages/<checksum>`),
/// removing everything else.
fn rewrite_as_the_old_layout(dir: &Path) {
    let cache = kiln::http::DownloadCache::open(dir).unwrap();
    let mut old_files = Vec::new();
    for (uri, digest) in cache.entries("apk-index").unwrap() {
        let bytes = std::fs::read(cache.blob(&digest).unwrap()).unwrap();
        let hex = kiln::digest::Digest::of(uri.as_bytes()).hex().to_owned();
        old_files.push((format!("indexes/{hex}"), bytes));
        old_files.push((format!("indexes/{hex}.url"), uri.into_bytes()));
    }
    for (checksum, digest) in cache.entries("apk-package").unwrap() {
        let bytes = std::fs::read(cache.blob(&digest).unwrap()).unwrap();
        old_files.push((format!("packages/{checksum}"), bytes));
    }
    assert!(
        old_files.iter().any(|(p, _)| p.starts_with("packages/")),
        "the online run kept packages"
    );
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
    for (relative, bytes) in old_files {
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// A cache from the kiln before the download cache was a store still serves an offline run:
/// its files move into the store on first use and the layer is the same.
#[test]
fn an_offline_run_reads_a_cache_in_the_older_layout() {
    let fx = fixture();
    let lower = MemFs::from_diff(&fx.lower);
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::start(fx.repo.clone(), None);
    let url = mirror.url.clone();
    let online = run(
        &commands(),
        &lower,
        &options(url.clone(), cache.path(), false),
    )
    .unwrap();
    drop(mirror);

    rewrite_as_the_old_layout(cache.path());
    let offline = run(
        &commands(),
        &lower,
        &options(url.clone(), cache.path(), true),
    )
    .unwrap();
    assert_eq!(offline.diff, online.diff, "offline, from the older cache");
    assert!(!cache.path().join("indexes").exists());
    assert!(!cache.path().join("packages").exists());
    // Once moved, the cache serves a second offline run as any cache does.
    let again = run(&commands(), &lower, &options(url, cache.path(), true)).unwrap();
    assert_eq!(again.diff, online.diff);
}

#[test]
fn a_package_the_mirror_corrupts_is_refused() {
    let fx = fixture();
    let lower = MemFs::from_diff(&fx.lower);
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::start(fx.repo.clone(), Some("hello-1.1-r0.apk".to_owned()));
    let err = run(
        &commands(),
        &lower,
        &options(mirror.url.clone(), cache.path(), false),
    )
    .unwrap_err();
    assert!(err.to_string().contains("hello"), "{err}");
}
