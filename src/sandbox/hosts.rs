//! The sandbox's `/etc/hosts`: `--add-host` entries parsed as docker parses them, and the file
//! written as BuildKit writes it.

use super::HOSTNAME;

/// One `--add-host HOST:IP` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraHost {
    /// The name.
    pub host: String,
    /// The address it resolves to.
    pub ip: std::net::IpAddr,
}

/// Parses `--add-host` as docker does: `HOST:IP` (split at the first `:`, so `HOST:::1` is an
/// IPv6 address) or buildx's `HOST=IP`. `host-gateway` (docker's name for the daemon's route
/// to the host) is refused: a sandboxed RUN has no such gateway.
pub fn parse_add_host(spec: &str) -> Result<ExtraHost, String> {
    let (host, ip) = spec
        .split_once('=')
        .or_else(|| spec.split_once(':'))
        .ok_or_else(|| format!("`{spec}`: expected HOST:IP"))?;
    let host = host.trim();
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{spec}`: invalid host name `{host}`"));
    }
    if ip == "host-gateway" {
        return Err(format!(
            "`{spec}`: host-gateway names a Docker daemon's gateway to the host, and kiln has no \
             daemon; give the address (with --network=host, 127.0.0.1 is the host)"
        ));
    }
    // docker also takes an IPv6 address in brackets.
    let bare = ip
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(ip);
    let ip = bare
        .parse()
        .map_err(|_| format!("`{spec}`: invalid IP address `{ip}`"))?;
    Ok(ExtraHost {
        host: host.to_owned(),
        ip,
    })
}

/// The sandbox's `/etc/hosts`, as BuildKit writes it: localhost with the hostname, the IPv6
/// loopback names, then each extra entry as `IP<tab>HOST`.
pub fn hosts_file(extra: &[ExtraHost]) -> String {
    let mut text =
        format!("127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for entry in extra {
        text.push_str(&format!("{}\t{}\n", entry.ip, entry.host));
    }
    text
}
