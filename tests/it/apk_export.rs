//! `kiln apk-export` and `--apk-repositories-file`: a build against an HTTP mirror (Python's
//! http.server on 127.0.0.1 serving the stand-in Alpine mirror), its cache exported as local
//! repositories, the mirror gone, and a fresh build from the export alone giving the same
//! image digest; without the export the same build fails naming the mirror.

use crate::support;
use crate::support::apk_fixture;
use crate::support::registry;
use crate::support::seed_standins;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{kiln, kiln_ok, require_tool, write_files};

/// A static HTTP server for a directory; stopped (by its PID) when dropped.
struct HttpServer(Child);

impl HttpServer {
    fn start(root: &Path, port: u16) -> HttpServer {
        require_tool("python3");
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(root)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("failed to start python3 -m http.server");
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "http.server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpServer(child)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn build(work: &Path, cache: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["build", "--progress", "plain", "--cache-dir", cache];
    args.extend(extra);
    let context = work.join("ctx");
    let context = context.to_str().unwrap().to_owned();
    args.push(&context);
    kiln(&args)
}

#[test]
fn an_exported_cache_rebuilds_the_same_image_after_the_mirror_is_gone() {
    let work = tempfile::tempdir().unwrap();
    let port = registry::free_port();
    let url = format!("http://127.0.0.1:{port}/{}", seed_standins::MIRROR_PATH);
    let standins = seed_standins::write(&work.path().join("standins"), &url);
    let server = HttpServer::start(&standins.mirror_root, port);
    write_files(
        &work.path().join("ctx"),
        &[(
            "Dockerfile",
            &format!(
                "FROM oci:{}:{}\nRUN apk update && apk upgrade && rm -rf /var/cache/apk/*\n",
                standins.base_layout.display(),
                seed_standins::BASE_TAG
            ),
        )],
    );
    let first_cache = work.path().join("cache-1");
    let first = build(work.path(), first_cache.to_str().unwrap(), &[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let digest = String::from_utf8_lossy(&first.stdout).trim().to_owned();

    let export = work.path().join("snapshot");
    kiln_ok(&[
        "apk-export",
        "--cache-dir",
        first_cache.to_str().unwrap(),
        export.to_str().unwrap(),
    ]);
    let listed = std::fs::read_to_string(export.join("repositories")).unwrap();
    let line = format!("./127.0.0.1_{port}/{}", seed_standins::MIRROR_PATH);
    assert!(listed.lines().any(|l| l == line), "{listed}");
    let repo = export.join(&line[2..]).join(apk_fixture::ARCH);
    assert_eq!(
        std::fs::read(repo.join("APKINDEX.tar.gz")).unwrap(),
        std::fs::read(
            standins
                .mirror_root
                .join(seed_standins::MIRROR_PATH)
                .join(apk_fixture::ARCH)
                .join("APKINDEX.tar.gz")
        )
        .unwrap(),
        "the index is exported byte for byte, so its signature still verifies"
    );
    let mut exported: Vec<String> = std::fs::read_dir(&repo)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    exported.sort();
    assert_eq!(
        exported,
        ["APKINDEX.tar.gz", "hello-1.1-r0.apk", "libgreet-1.1-r0.apk"],
        "exactly the packages the build used"
    );

    // The mirror is gone; a fresh cache cannot build from it...
    drop(server);
    let gone = build(
        work.path(),
        work.path().join("cache-2").to_str().unwrap(),
        &[],
    );
    assert!(!gone.status.success());
    let message = String::from_utf8_lossy(&gone.stderr);
    assert!(message.contains(&url), "names the mirror: {message}");

    // ...but the export gives the same image, byte for byte.
    let again = build(
        work.path(),
        work.path().join("cache-3").to_str().unwrap(),
        &[
            "--apk-repositories-file",
            export.join("repositories").to_str().unwrap(),
        ],
    );
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), digest);

    // Exports never overwrite, and an empty cache has nothing to export.
    let exists = kiln(&[
        "apk-export",
        "--cache-dir",
        first_cache.to_str().unwrap(),
        export.to_str().unwrap(),
    ]);
    assert_eq!(exists.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&exists.stderr).contains("already exists"));
    let empty = kiln(&[
        "apk-export",
        "--cache-dir",
        work.path().join("cache-3").to_str().unwrap(),
        work.path().join("snapshot-2").to_str().unwrap(),
    ]);
    assert_eq!(empty.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&empty.stderr).contains("an index fetched over HTTP(S)"),
        "{}",
        String::from_utf8_lossy(&empty.stderr)
    );
    assert!(
        !work.path().join("snapshot-2").exists(),
        "nothing half-written"
    );
}
