//! Fuzzes the small text formats of registry access: `WWW-Authenticate` challenges,
//! `registries.conf` (v2 TOML: prefixes, mirrors, blocked, insecure) with the lookups it
//! drives, `kiln verify` policy files (JSON or TOML) and image references. The first byte picks
//! the format.
#![no_main]

use std::path::Path;

use kiln::registry::{Reference, RegistryMap};
use libfuzzer_sys::fuzz_target;

const REFERENCES: &[&str] = &[
    "alpine",
    "docker.io/library/python:3.11-alpine",
    "ghcr.io/owner/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    "localhost:5000/a/b/c:tag",
    "example.com/x",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match selector % 4 {
        0 => {
            let _ = kiln::registry::auth::parse_challenge(text);
        }
        1 => {
            let Ok(map) = RegistryMap::parse(text, Path::new("registries.conf")) else {
                return;
            };
            let _ = map.insecure_hosts();
            for reference in REFERENCES {
                if let Ok(reference) = reference.parse::<Reference>() {
                    let _ = map.locations(&reference, true);
                    let _ = map.locations(&reference, false);
                }
            }
        }
        2 => {
            let _ = kiln::attest::verify::Policy::parse(text, "policy");
        }
        _ => {
            if let Ok(reference) = text.parse::<Reference>() {
                let _ = reference.manifest_ref();
                let _ = reference.to_string().parse::<Reference>();
            }
        }
    }
});
