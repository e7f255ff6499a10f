//! Tests of `python::wheel`.

use super::record::{check_member_name, csv_field, parse_csv_line, relative};
use super::scripts::rewrite_shebang;
use super::*;
use crate::layer::{FileContent, LayerPath};

#[test]
fn launchers_match_pip_24_vectors() {
    // sha256/size of pip 24.0's launchers with /usr/local/bin/python3.11 (research notes).
    for (value, want_hash, want_size) in [
        (
            "gunicorn.app.wsgiapp:run",
            "sha256=38mKWsfBfkW6hq6TjMM1y0IRxuyaO-vBPT26qVLRUVA",
            226,
        ),
        (
            "flask.cli:main",
            "sha256=PA86xMfWcAehl7KpGDMcGmtNktOzhLDIT9Jo0iEvNxE",
            217,
        ),
    ] {
        let text = launcher_script("/usr/local/bin/python3.11", value).unwrap();
        assert_eq!(record_hash(text.as_bytes()), want_hash, "{value}");
        assert_eq!(text.len(), want_size, "{value}");
    }
    assert!(launcher_script("/x", "module_only").is_none());
    assert!(
        launcher_script("/x", "a.b:c.d [extra]")
            .unwrap()
            .contains("from a.b import c\n")
    );
}

#[test]
fn record_hash_vectors() {
    assert_eq!(
        record_hash(b"pip\n"),
        "sha256=zuuue4knoyJ-UwPPXg8fezS7VCrXJQrAP7zeNuwvFQg"
    );
    assert_eq!(
        record_hash(b""),
        "sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
    );
}

#[test]
fn member_names_and_paths() {
    for bad in [
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a/./b",
        "C:/x",
        "a\\..\\b",
        "a//b",
    ] {
        assert!(check_member_name(bad).is_err(), "{bad}");
    }
    for good in ["a/b.py", "pkg/", "x-1.0.data/scripts/run"] {
        assert!(check_member_name(good).is_ok(), "{good}");
    }
    let p = |s| LayerPath::new(s).unwrap();
    assert_eq!(
        relative(
            &p("home/u/.local/bin/flask"),
            &p("home/u/.local/lib/python3.11/site-packages")
        ),
        "../../../bin/flask"
    );
    assert_eq!(relative(&p("t/bin/flask"), &p("t")), "bin/flask");
    assert_eq!(
        parse_csv_line("\"a,b\",sha256=x,3\r").unwrap(),
        ["a,b", "sha256=x", "3"]
    );
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(normalize_name("Foo.Bar__baz"), "foo-bar-baz");
}

#[test]
fn shebangs() {
    assert_eq!(
        shebang("/usr/local/bin/python3.11"),
        "#!/usr/local/bin/python3.11\n"
    );
    assert!(shebang("/opt/my python/bin/python").starts_with("#!/bin/sh\n"));
    let script = FileContent::Bytes(b"#!pythonw -E\nprint(1)\n".as_slice().into());
    assert_eq!(
        rewrite_shebang(&script, "/usr/bin/python3.11")
            .unwrap()
            .unwrap(),
        b"#!/usr/bin/python3.11\nprint(1)\n"
    );
    let plain = FileContent::Bytes(b"#!/bin/sh\n".as_slice().into());
    assert!(rewrite_shebang(&plain, "/x").unwrap().is_none());
}
