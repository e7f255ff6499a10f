//! Tests of the sandbox's pure parts: --add-host, the hosts file, USER resolution.

use super::*;

#[test]
fn add_host_takes_dockers_and_buildxs_forms() {
    let v4: std::net::IpAddr = "10.1.2.3".parse().unwrap();
    let v6: std::net::IpAddr = "fe80::1".parse().unwrap();
    for (spec, host, ip) in [
        ("db:10.1.2.3", "db", v4),
        ("db=10.1.2.3", "db", v4),
        ("db:fe80::1", "db", v6),
        ("db:[fe80::1]", "db", v6),
        ("db=fe80::1", "db", v6),
    ] {
        let entry = parse_add_host(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!((entry.host.as_str(), entry.ip), (host, ip), "{spec}");
    }
    for spec in [
        "db",
        ":10.1.2.3",
        "db:host-gateway",
        "db:10.1.2",
        "a b:10.1.2.3",
    ] {
        assert!(parse_add_host(spec).is_err(), "{spec}");
    }
}

#[test]
fn hosts_file_is_buildkits() {
    let extra = [parse_add_host("db:10.0.0.2").unwrap()];
    assert_eq!(
        hosts_file(&extra),
        "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             10.0.0.2\tdb\n"
    );
}
