//! registries.conf through the `kiln` binary against a real registry (Debian's docker-registry
//! on 127.0.0.1): a logical name (`ghcr.io/acme/...`) pushed and pulled at its location, a
//! mirror that is down skipped for the location, a blocked prefix and a broken file named.

use crate::support;
use crate::support::registry as registry_support;

use registry_support::{Auth, TestRegistry, free_port, skopeo};
use support::{kiln, kiln_ok, write_files};

#[test]
fn logical_names_go_to_their_location_and_mirrors_fall_back() {
    let reg = TestRegistry::start(Auth::None);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let cache = cache.to_str().unwrap();
    let conf = work.path().join("registries.conf");
    let down = free_port();
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nprefix = \"ghcr.io/acme\"\nlocation = \"{}/mirrored/acme\"\n\
             [[registry.mirror]]\nlocation = \"127.0.0.1:{down}/acme\"\n\n\
             [[registry]]\nprefix = \"ghcr.io/forbidden\"\nblocked = true\n",
            reg.host()
        ),
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let context = work.path().join("ctx");
    write_files(
        &context,
        &[
            ("hello.txt", "hello\n"),
            ("Dockerfile", "FROM scratch\nCOPY hello.txt /\n"),
        ],
    );
    let digest = kiln_ok(&[
        "build",
        "--progress",
        "quiet",
        "--cache-dir",
        cache,
        "--registries-conf",
        conf,
        "--provenance=false",
        "-t",
        "ghcr.io/acme/hello:1",
        "--push",
        context.to_str().unwrap(),
    ]);
    let digest = digest.trim();
    // The push went to the location, not to ghcr.io and not to the mirror.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/mirrored/acme/hello:1", reg.host()),
    ]);
    assert_eq!(registry_support::sha256(&raw), digest);

    // A pull with a fresh cache: the mirror refuses connections, the location serves it.
    let fresh = work.path().join("fresh-cache");
    let pulled = kiln(&[
        "pull",
        "--cache-dir",
        fresh.to_str().unwrap(),
        "--registries-conf",
        conf,
        "ghcr.io/acme/hello:1",
    ]);
    let stderr = String::from_utf8_lossy(&pulled.stderr);
    assert!(pulled.status.success(), "{stderr}");
    assert!(
        String::from_utf8_lossy(&pulled.stdout).contains(digest),
        "{}",
        String::from_utf8_lossy(&pulled.stdout)
    );

    // A blocked prefix is refused before any request, naming the file and the prefix.
    let blocked = kiln(&[
        "pull",
        "--cache-dir",
        cache,
        "--registries-conf",
        conf,
        "ghcr.io/forbidden/app:1",
    ]);
    assert_eq!(blocked.status.code(), Some(1));
    let message = String::from_utf8_lossy(&blocked.stderr);
    assert!(
        message.contains("is blocked by registries.conf")
            && message.contains(conf)
            && message.contains("prefix `ghcr.io/forbidden`"),
        "{message}"
    );

    // A file that is not TOML is named with the parser's line and column.
    let broken = work.path().join("broken.conf");
    std::fs::write(&broken, "[[registry]\nprefix = 1\n").unwrap();
    let refused = kiln(&[
        "pull",
        "--registries-conf",
        broken.to_str().unwrap(),
        "ghcr.io/acme/hello:1",
    ]);
    assert_ne!(refused.status.code(), Some(0));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains(&format!("registries.conf `{}`", broken.display()))
            && message.contains("line 1"),
        "{message}"
    );
}
