//! The base image's Dockerfile steps through `kiln build`, with no container: on the fixture's
//! Alpine-like rootfs (busybox, an installed db, a signed local repository), `apk update && apk
//! upgrade && rm -rf /var/cache/apk/*` and `addgroup`/`adduser` are computed natively, and the
//! image runs under runc with the upgraded package and the new user.

use crate::support;
use crate::support::apk_fixture;

use std::collections::BTreeMap;

use kiln::image::config::{ImageConfig, RuntimeConfig};
use kiln::layer::{self, WriteOptions};
use kiln::store::Store;
use support::{kiln, kiln_ok, run_image, write_files};

#[test]
fn apk_upgrade_and_adduser_run_natively_and_the_image_runs() {
    let fx = apk_fixture::fixture();
    let work = tempfile::tempdir().unwrap();
    // The fixture's rootfs becomes a one-layer base image in an OCI layout.
    let store = Store::open(&work.path().join("base-store")).unwrap();
    let base_layer = layer::write(&fx.lower, &store, &WriteOptions::default()).unwrap();
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        config: RuntimeConfig {
            env: Some(vec![
                "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into(),
            ]),
            ..RuntimeConfig::default()
        },
        ..ImageConfig::default()
    };
    let base = kiln::image::assemble(&store, &config, &[base_layer], &BTreeMap::new()).unwrap();
    let base_layout = work.path().join("base");
    kiln::image::layout::write_oci_layout(
        &store,
        &base_layout,
        &[(base, vec!["alpine:fixture".into()])],
    )
    .unwrap();

    let context = work.path().join("ctx");
    write_files(
        &context,
        &[(
            "Dockerfile",
            &format!(
                "FROM oci:{}:fixture\n\
                 RUN addgroup -g 1000 appuser && adduser -D -u 1000 -G appuser appuser\n\
                 RUN apk update && apk upgrade && rm -rf /var/cache/apk/*\n\
                 USER appuser\n\
                 CMD [\"/bin/busybox\", \"sh\", \"-c\", \"/usr/bin/hello; /bin/busybox id; /bin/busybox cat /etc/hello.conf /etc/hello.conf.apk-new\"]\n",
                base_layout.display()
            ),
        )],
    );
    let layout = work.path().join("layout");
    let cache = work.path().join("cache");
    let log = kiln(&[
        "build",
        "--progress",
        "plain",
        "--cache-dir",
        cache.to_str().unwrap(),
        "-t",
        "app:1",
        "--output",
        &format!("type=oci,dest={}", layout.display()),
        context.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&log.stderr);
    assert!(log.status.success(), "{stderr}");
    assert!(stderr.contains("(2 layers written"), "{stderr}");
    let (status, stdout, runc_err) = run_image(&layout, "1", work.path());
    assert_eq!(status, 0, "{runc_err}");
    assert_eq!(
        stdout,
        "hello 1.1\nuid=1000(appuser) gid=1000(appuser) groups=1000(appuser)\n\
         greeting=howdy\ngreeting=hello\nloud=yes\n",
        "the upgraded package runs, the new user exists, and the modified /etc file is kept \
         beside its .apk-new"
    );

    // A second build is all cache hits: the packages are verified again but nothing is written.
    let again = kiln_ok(&[
        "build",
        "--progress",
        "quiet",
        "--cache-dir",
        cache.to_str().unwrap(),
        context.to_str().unwrap(),
    ]);
    assert!(again.starts_with("sha256:"));
}
