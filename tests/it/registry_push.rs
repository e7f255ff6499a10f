//! Push tests against a real registry (Debian's docker-registry) checked with skopeo: digests
//! round-trip, a second push sends no blob bytes, cross-repository mounts, chunked uploads,
//! index pushes, htpasswd and token auth (errors never contain the password).

use crate::support::registry as registry_support;

use kiln::image::manifest::{Index, MEDIA_TYPE_OCI_INDEX};
use kiln::registry::{self, Credential, Reference, RegistryError, RegistryOptions, UploadMode};
use kiln::store::Store;
use registry_support::{
    Auth, PASSWORD, TestRegistry, USER, make_image, make_large_image, sha256, skopeo,
};

fn reference(text: &str) -> Reference {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn options() -> RegistryOptions {
    RegistryOptions::default().use_environment(false)
}

#[test]
fn push_is_read_back_by_skopeo_and_second_push_sends_no_blobs() {
    let reg = TestRegistry::start(Auth::None);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let image = make_image(&store, "push", 3);
    let target = reference(&reg.reference("kiln/app:v1"));
    let latest = reference(&reg.reference("kiln/app:latest"));

    let result = registry::push(&store, &image, &[target.clone(), latest], &options()).unwrap();
    assert_eq!(result.digest, image.manifest.digest);
    assert_eq!(result.blobs_uploaded, 4, "{result:?}");
    assert_eq!(result.pushed.len(), 2);

    for tag in ["v1", "latest"] {
        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}:{tag}", reg.reference("kiln/app")),
        ]);
        assert_eq!(sha256(&raw), image.manifest.digest.to_string(), "tag {tag}");
    }
    let layout = dir.path().join("copied");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}", reg.reference("kiln/app:v1")),
        &format!("oci:{}:v1", layout.display()),
    ]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"].as_str(),
        Some(image.manifest.digest.to_string().as_str())
    );
    for layer in &image.layers {
        assert!(
            layout
                .join("blobs/sha256")
                .join(layer.digest.hex())
                .is_file()
        );
    }

    // Again: every blob exists, so no upload session is opened and no bytes are sent.
    let mark = reg.mark();
    let again = registry::push(&store, &image, &[target], &options()).unwrap();
    assert_eq!(
        (
            again.blobs_uploaded,
            again.blobs_existing,
            again.bytes_uploaded
        ),
        (0, 4, 0)
    );
    assert_eq!(
        reg.count(mark, "POST", "/blobs/uploads/"),
        0,
        "{}",
        reg.log()
    );
    assert_eq!(reg.count(mark, "PUT", "/blobs/uploads/"), 0);
    assert_eq!(reg.count(mark, "PATCH", "/blobs/uploads/"), 0);
    assert_eq!(reg.count(mark, "HEAD", "/blobs/sha256:"), 4);
}

#[test]
fn cross_repository_mount_is_used() {
    let reg = TestRegistry::start(Auth::None);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = make_image(&store, "mount", 2);
    registry::push(
        &store,
        &image,
        &[reference(&reg.reference("base/img:1"))],
        &options(),
    )
    .unwrap();
    let mark = reg.mark();
    let result = registry::push(
        &store,
        &image,
        &[reference(&reg.reference("app/img:1"))],
        &options().mount_from("base/img"),
    )
    .unwrap();
    assert_eq!(
        (result.blobs_mounted, result.blobs_uploaded),
        (3, 0),
        "{result:?}"
    );
    assert_eq!(reg.count(mark, "POST", "mount=sha256"), 3, "{}", reg.log());
    assert_eq!(reg.count(mark, "PUT", "/blobs/uploads/"), 0);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}", reg.reference("app/img:1")),
    ]);
    assert_eq!(sha256(&raw), image.manifest.digest.to_string());
}

#[test]
fn chunked_upload_of_a_large_layer() {
    let reg = TestRegistry::start(Auth::None);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = make_large_image(&store, 9 << 20);
    let mark = reg.mark();
    registry::push(
        &store,
        &image,
        &[reference(&reg.reference("big/img:1"))],
        &options().upload_mode(UploadMode::Chunked),
    )
    .unwrap();
    // 9 MiB of random data in 4 MiB chunks: 3 PATCHes for the layer, 1 for the config.
    assert_eq!(
        reg.count(mark, "PATCH", "/blobs/uploads/"),
        4,
        "{}",
        reg.log()
    );
    let copy = dir.path().join("copy");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}", reg.reference("big/img:1")),
        &format!("oci:{}:1", copy.display()),
    ]);
    let layer = &image.layers[0];
    assert_eq!(
        std::fs::read(copy.join("blobs/sha256").join(layer.digest.hex())).unwrap(),
        std::fs::read(store.blob_path(&layer.digest)).unwrap()
    );
}

#[test]
fn index_push_then_pull_of_a_missing_platform_lists_what_is_there() {
    let reg = TestRegistry::start(Auth::None);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = make_image(&store, "index", 1);
    let mut index = Index::empty();
    index.manifests.push(image.manifest.to_descriptor());
    let bytes = kiln::image::canonical::to_vec(&index).unwrap();
    store.put_bytes(&bytes).unwrap();
    let result = registry::push_manifest(
        &store,
        &bytes,
        MEDIA_TYPE_OCI_INDEX,
        &[reference(&reg.reference("multi/img:1"))],
        &options(),
    )
    .unwrap();
    assert_eq!(result.digest.to_string(), sha256(&bytes));
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}", reg.reference("multi/img:1")),
    ]);
    assert_eq!(raw, bytes);

    let fresh = Store::open(&dir.path().join("fresh")).unwrap();
    let err = registry::pull(
        &reference(&reg.reference("multi/img:1")),
        &"linux/s390x".parse().unwrap(),
        &fresh,
        &options(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, RegistryError::PlatformNotFound { .. }),
        "{text}"
    );
    assert!(
        text.contains("linux/s390x") && text.contains("available: linux/amd64"),
        "{text}"
    );
    let pulled = registry::pull(
        &reference(&reg.reference("multi/img:1")),
        &"linux/amd64".parse().unwrap(),
        &fresh,
        &options(),
    )
    .unwrap();
    assert_eq!(pulled.manifest_digest, image.manifest.digest);
    assert_eq!(pulled.index_digest, Some(result.digest));
}

#[test]
fn htpasswd_wrong_password_is_a_clear_error_without_the_password() {
    let reg = TestRegistry::start(Auth::Htpasswd);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = make_image(&store, "basic", 1);
    let target = reference(&reg.reference("secure/img:1"));
    let wrong = "Wr0ng-pa55word-XYZ";
    let err = registry::push(
        &store,
        &image,
        std::slice::from_ref(&target),
        &options().credential(&reg.host(), Credential::basic(USER, wrong)),
    )
    .unwrap_err();
    let text = err.to_string();
    let debug = format!("{err:?}");
    assert!(
        matches!(err, RegistryError::Unauthorized { status: 401, .. }),
        "{text}"
    );
    assert!(text.contains(&reg.host()) && text.contains("401"), "{text}");
    assert!(
        !text.contains(wrong) && !debug.contains(wrong),
        "{text}\n{debug}"
    );

    // No credentials at all: the hint names the login command and the variable.
    let err = registry::push(&store, &image, std::slice::from_ref(&target), &options())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kiln login") && err.contains("KILN_REGISTRY_AUTH_127_0_0_1_"),
        "{err}"
    );

    // login checks and stores the credential; a later push finds it in config.json.
    let config = dir.path().join("docker-config");
    let bad = registry::login(&reg.host(), USER, wrong, &options().config_dir(&config));
    assert!(bad.is_err() && !config.join("config.json").exists());
    registry::login(&reg.host(), USER, PASSWORD, &options().config_dir(&config)).unwrap();
    let stored = std::fs::read_to_string(config.join("config.json")).unwrap();
    assert!(!stored.contains(PASSWORD), "stored base64, not plain text");
    let result = registry::push(&store, &image, &[target], &options().config_dir(&config)).unwrap();
    assert_eq!(result.digest, image.manifest.digest);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("--creds={USER}:{PASSWORD}"),
        &format!("docker://{}", reg.reference("secure/img:1")),
    ]);
    assert_eq!(sha256(&raw), image.manifest.digest.to_string());
    // The registry log holds no password either.
    assert!(!reg.log().contains(PASSWORD));
}

#[test]
fn token_auth_push_with_credentials_and_anonymous_pull() {
    let reg = TestRegistry::start(Auth::Token);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a")).unwrap();
    let image = make_image(&store, "token", 2);
    let target = reference(&reg.reference("tok/img:1"));

    // Anonymous tokens are pull-only: the push fails naming the registry.
    let err =
        registry::push(&store, &image, std::slice::from_ref(&target), &options()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{text}");
    assert!(text.contains(&reg.host()), "{text}");

    let with = options().credential(&reg.host(), Credential::basic(USER, PASSWORD));
    let result = registry::push(&store, &image, std::slice::from_ref(&target), &with).unwrap();
    assert_eq!(result.blobs_uploaded, 3);
    // Mount across repositories with one multi-scope token.
    let mounted = registry::push(
        &store,
        &image,
        &[reference(&reg.reference("tok/other:1"))],
        &with.clone().mount_from("tok/img"),
    )
    .unwrap();
    assert_eq!(mounted.blobs_mounted, 3, "{mounted:?}");

    let fresh = Store::open(&dir.path().join("b")).unwrap();
    let pulled =
        registry::pull(&target, &"linux/amd64".parse().unwrap(), &fresh, &options()).unwrap();
    assert_eq!(pulled.manifest_digest, image.manifest.digest);
    assert_eq!(pulled.layers, image.layers);
    assert!(fresh.fsck().unwrap().is_empty());
}
