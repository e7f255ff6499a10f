//! Debian version ordering, as dpkg compares versions (`[epoch:]upstream[-revision]`, see
//! deb-version(5)): epochs numerically, then upstream and revision each with dpkg's
//! `verrevcmp`, where `~` sorts before everything (even the end of the string), letters before
//! other characters, and digit runs compare as numbers. [`compare`] is that algorithm step for
//! step; the tests check it against `dpkg --compare-versions`.

use std::cmp::Ordering;

/// A version split as dpkg splits it.
#[derive(Debug, PartialEq, Eq)]
struct Parts<'a> {
    epoch: u64,
    upstream: &'a str,
    revision: &'a str,
}

/// Splits at the first `:` (epoch) and the last `-` (revision); None when the version is not
/// one dpkg accepts (empty parts, a non-numeric epoch, an upstream that does not start with a
/// digit, characters outside deb-version(5)'s sets).
fn parts(version: &str) -> Option<Parts<'_>> {
    let version = version.trim();
    let (epoch, rest) = match version.split_once(':') {
        Some((epoch, rest)) => {
            if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (epoch.parse().ok()?, rest)
        }
        None => (0, version),
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((upstream, revision)) => (upstream, revision),
        None => (rest, ""),
    };
    if rest.ends_with('-') || !upstream.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let upstream_ok = upstream
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-+~:".contains(&b));
    let revision_ok = revision
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".+~".contains(&b));
    (upstream_ok && revision_ok).then_some(Parts {
        epoch,
        upstream,
        revision,
    })
}

/// True when `version` is a valid Debian version.
pub fn is_valid(version: &str) -> bool {
    parts(version).is_some()
}

/// dpkg's weight of one character of a non-digit run (`0` = the end of the string).
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternating non-digit runs (by [`order`]) and digit runs (as numbers).
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// Orders two Debian versions as `dpkg --compare-versions` does. A version dpkg would refuse
/// sorts by its text against valid ones (callers check [`is_valid`] first).
pub fn compare(a: &str, b: &str) -> Ordering {
    match (parts(a), parts(b)) {
        (Some(a), Some(b)) => a
            .epoch
            .cmp(&b.epoch)
            .then_with(|| verrevcmp(a.upstream, b.upstream))
            .then_with(|| verrevcmp(a.revision, b.revision)),
        _ => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb_version_examples() {
        use Ordering::*;
        for (a, b, expected) in [
            ("1.0", "1.0-0", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0", "1.0+b1", Less),
            ("1:0.1", "2.0", Greater),
            ("1.0-1", "1.0-1+deb12u1", Less),
            ("3.0.11-1~deb12u2", "3.0.11-1", Less),
            ("1.2a", "1.2+", Less),
            ("1.002", "1.2", Equal),
            ("0:1.0", "1.0", Equal),
            ("2.36-9+deb12u4", "2.36-9+deb12u10", Less),
        ] {
            assert_eq!(compare(a, b), expected, "{a} vs {b}");
            assert_eq!(compare(b, a), expected.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn invalid_versions() {
        for bad in ["", "a1.0", ":1.0", "x:1.0", "1.0-", "1.0 beta", "1.0-r_1"] {
            assert!(!is_valid(bad), "{bad}");
        }
        for good in ["1", "1:2.3-4", "2.0~rc1+dfsg-1~bpo12+1", "1:2:3-4"] {
            assert!(is_valid(good), "{good}");
        }
    }
}
