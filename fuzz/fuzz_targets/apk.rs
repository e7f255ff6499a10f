//! Fuzzes Alpine's formats: APKINDEX text records (`P:`, `V:`, `D:`, ...), `APKINDEX.tar.gz`
//! containers and `.apk` packages (concatenated gzip members, `.PKGINFO`, data tar). The first
//! byte picks the format. Packages are opened with the checksum the parser computes, so the
//! fuzzer reaches the data member instead of stopping at the integrity check.
#![no_main]

use kiln::apk::{ApkError, Checksum, Index, Package, PkgInfo, Trust, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => text_records(rest),
        1 => {
            let _ = Index::parse_verified_earlier(rest, "APKINDEX.tar.gz");
        }
        _ => package(rest),
    }
});

fn text_records(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let _ = PkgInfo::parse(text, "fuzz.apk");
    let Ok(records) = kiln::apk::index::parse_records(text, "APKINDEX") else {
        return;
    };
    for record in &records {
        if let Ok(info) = kiln::apk::index::PackageInfo::from_record(record, "APKINDEX") {
            let _ = info.header_fields();
            let _ = Version::parse(&info.version);
        }
    }
    let mut previous = "";
    for line in text.lines() {
        let _ = kiln::apk::index::parse_deps(line);
        let _ = kiln::apk::index::parse_provides(line);
        let _ = Version::parse(line);
        let _ = kiln::apk::version::compare(previous, line);
        let _ = kiln::apk::version::compare_fuzzy(previous, line, true);
        let _ = kiln::apk::version::fuzzy_match(line, previous);
        previous = line;
    }
}

fn package(bytes: &[u8]) {
    let first = Package::open(bytes, "fuzz.apk", Trust::Index(Checksum::sha1_of(b"")));
    if let Err(ApkError::ChecksumMismatch { actual, .. }) = first {
        if let Ok(checksum) = Checksum::parse(&actual) {
            let _ = Package::open(bytes, "fuzz.apk", Trust::Index(checksum));
        }
    }
}
