//! Tests of `python::index`.

use super::listing::Page;
use super::*;
use reqwest::Url;

#[test]
fn html_anchors() {
    let html = r#"<html><body><a href="../../f/flask-3.1.3-py3-none-any.whl#sha256=ABC" data-requires-python="&gt;=3.9" data-core-metadata="sha256=DEF">flask-3.1.3-py3-none-any.whl</a><br/>
            <A HREF='flask-0.1.tar.gz' data-yanked>flask-0.1.tar.gz</A></body></html>"#;
    let source = Source::parse(SourceKind::Index, "https://u:p@idx.invalid/simple", "t").unwrap();
    assert_eq!(source.display, "https://idx.invalid/simple");
    let base = Url::parse("https://idx.invalid/simple/flask/").unwrap();
    let files = Page::Html(html.to_owned())
        .into_files(&base, &source, false)
        .unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].sha256.as_deref(), Some("abc"));
    assert_eq!(files[0].requires_python.as_deref(), Some(">=3.9"));
    assert_eq!(
        files[0].metadata,
        MetadataHint::Present {
            sha256: Some("def".into())
        }
    );
    assert_eq!(
        files[0].location,
        FileLocation::Http(
            Url::parse("https://idx.invalid/f/flask-3.1.3-py3-none-any.whl#sha256=ABC").unwrap()
        )
    );
    assert_eq!(files[1].yanked.as_deref(), Some(""));
    let evil = "<a href=\"file:///etc/shadow\">x-1.0-py3-none-any.whl</a>";
    let err = Page::Html(evil.to_owned())
        .into_files(&base, &source, false)
        .unwrap_err();
    assert!(matches!(err, IndexError::RemoteFileLink { .. }), "{err}");
}

#[test]
fn locations() {
    for (value, ok) in [
        ("/wheels", true),
        ("file:///wheels", true),
        ("https://x.invalid/simple", true),
        ("wheels", false),
        ("./wheels", false),
        ("ftp://x.invalid/", false),
    ] {
        assert_eq!(
            Source::parse(SourceKind::FindLinks, value, "t").is_ok(),
            ok,
            "{value}"
        );
    }
    assert_eq!(
        project_of("Flask_Foo-1.0.tar.gz"),
        Some(("flask-foo".into(), "1.0".into()))
    );
    assert_eq!(
        project_of("MarkupSafe-3.0.4-cp311-cp311-musllinux_1_2_x86_64.whl"),
        Some(("markupsafe".into(), "3.0.4".into()))
    );
}
