//! A fault-injecting HTTP/1.1 proxy for registry tests, on 127.0.0.1 only.
//!
//! Each connection carries one request (the proxy answers `Connection: close`). Requests are
//! numbered from 1; the [`Fault`] planned for a request is applied instead of (or while)
//! forwarding it: a 503, a 429 with `Retry-After: 1`, a reset mid-body (the request's, or before
//! any answer when it has none), a response cut off halfway (after the registry did the work), or
//! one flipped byte (in the request body when it has one, else in the response body). Everything
//! else is forwarded unchanged to the upstream registry (the `Host` header is kept, so the
//! registry's absolute `Location`s point back at the proxy). At most `MAX_CONNECTIONS`
//! connections are served; the thread ends with the test.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const MAX_CONNECTIONS: usize = 200_000;

/// What to do to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer 503 Service Unavailable.
    Unavailable,
    /// Answer 429 with `Retry-After: 1`.
    TooManyRequests,
    /// Read half of the request body, then reset the connection (no body: reset at once).
    ResetMidBody,
    /// Forward the request, then send back only the first half of the registry's response.
    Truncated,
    /// Flip one byte: in the request body when there is one, else in the response body.
    FlipByte,
}

impl Fault {
    /// Every fault kind.
    pub const ALL: [Fault; 5] = [
        Fault::Unavailable,
        Fault::TooManyRequests,
        Fault::ResetMidBody,
        Fault::Truncated,
        Fault::FlipByte,
    ];
}

/// The kind of registry request, from its method and path (for plans and the tally).
pub fn request_kind(method: &str, path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or(path);
    match method {
        "HEAD" if path.contains("/blobs/") => "HEAD blob",
        "HEAD" if path.contains("/manifests/") => "HEAD manifest",
        "GET" if path.contains("/blobs/uploads/") => "GET upload status",
        "GET" if path.contains("/blobs/") => "GET blob",
        "GET" if path.contains("/manifests/") => "GET manifest",
        "GET" if path.contains("/tags/list") => "GET tags",
        "GET" => "GET other",
        "POST" => "POST upload",
        "PATCH" => "PATCH chunk",
        "PUT" if path.contains("/blobs/uploads/") => "PUT blob",
        "PUT" if path.contains("/manifests/") => "PUT manifest",
        "DELETE" => "DELETE",
        _ => "other",
    }
}

/// A running proxy.
pub struct FaultProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Requests seen so far.
    pub requests: Arc<AtomicUsize>,
    /// Faults applied so far.
    pub injected: Arc<AtomicUsize>,
    /// Every applied fault, by (fault, request kind).
    pub applied: Arc<Mutex<BTreeMap<(String, &'static str), usize>>>,
}

type Plan = dyn Fn(usize, &str, &str) -> Option<Fault> + Send + Sync;

impl FaultProxy {
    /// Proxies to `127.0.0.1:upstream`, applying `plan(n, method, path)` to request `n`.
    pub fn start(
        upstream: u16,
        plan: impl Fn(usize, &str, &str) -> Option<Fault> + Send + Sync + 'static,
    ) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let proxy = FaultProxy {
            port,
            requests: Arc::new(AtomicUsize::new(0)),
            injected: Arc::new(AtomicUsize::new(0)),
            applied: Arc::new(Mutex::new(BTreeMap::new())),
        };
        let shared = Arc::new(Shared {
            upstream,
            seen: proxy.requests.clone(),
            hits: proxy.injected.clone(),
            applied: proxy.applied.clone(),
            plan: Box::new(plan),
        });
        std::thread::spawn(move || {
            for stream in listener.incoming().take(MAX_CONNECTIONS) {
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &shared);
                });
            }
        });
        proxy
    }

    /// Proxies to `127.0.0.1:upstream`, applying a fault to each request with probability
    /// `rate`, the kind drawn evenly from [`Fault::ALL`] (deterministic for one `seed`).
    pub fn random(upstream: u16, rate: f64, seed: u64) -> FaultProxy {
        let state = AtomicU64::new(seed.max(1));
        FaultProxy::start(upstream, move |_, _, _| {
            let draw = next_random(&state);
            let unit = (draw >> 11) as f64 / (1u64 << 53) as f64;
            if unit >= rate {
                return None;
            }
            let kind = (next_random(&state) % Fault::ALL.len() as u64) as usize;
            Some(Fault::ALL[kind])
        })
    }

    /// The applied faults as `fault on kind: count` lines.
    pub fn tally(&self) -> String {
        let applied = self.applied.lock().expect("tally lock");
        applied
            .iter()
            .map(|((fault, kind), count)| format!("{fault} on {kind}: {count}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// xorshift64*: enough randomness for fault plans without another dependency.
fn next_random(state: &AtomicU64) -> u64 {
    let mut x = state.load(Ordering::SeqCst);
    loop {
        let mut next = x;
        next ^= next >> 12;
        next ^= next << 25;
        next ^= next >> 27;
        match state.compare_exchange(x, next, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return next.wrapping_mul(0x2545_F491_4F6C_DD1D),
            Err(current) => x = current,
        }
    }
}

struct Shared {
    upstream: u16,
    seen: Arc<AtomicUsize>,
    hits: Arc<AtomicUsize>,
    applied: Arc<Mutex<BTreeMap<(String, &'static str), usize>>>,
    plan: Box<Plan>,
}

impl Shared {
    fn record(&self, fault: Fault, kind: &'static str) {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let mut applied = self.applied.lock().expect("tally lock");
        *applied.entry((format!("{fault:?}"), kind)).or_default() += 1;
    }
}

fn serve(client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    // A TLS handshake (kiln tries HTTPS first on loopback): answered as a plain-HTTP server
    // answers it, and not counted as a request.
    if reader.fill_buf()?.first() == Some(&0x16) {
        let mut client = client;
        client.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    }
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    let mut fields = BTreeMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            fields.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            if name.eq_ignore_ascii_case("connection") {
                continue;
            }
        }
        headers.push(line);
    }
    let length: usize = fields
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let kind = request_kind(&method, &path);
    let n = shared.seen.fetch_add(1, Ordering::SeqCst) + 1;
    let mut client = client;
    let fault = (shared.plan)(n, &method, &path);
    match fault {
        Some(Fault::Unavailable) => {
            shared.record(Fault::Unavailable, kind);
            drain(&mut reader, length)?;
            client.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
            return Ok(());
        }
        Some(Fault::TooManyRequests) => {
            shared.record(Fault::TooManyRequests, kind);
            drain(&mut reader, length)?;
            client.write_all(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
            return Ok(());
        }
        Some(Fault::ResetMidBody) => {
            shared.record(Fault::ResetMidBody, kind);
            drain(&mut reader, length / 2)?;
            reset(&client);
            return Ok(());
        }
        _ => {}
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let flip_request = fault == Some(Fault::FlipByte) && !body.is_empty();
    if flip_request {
        shared.record(Fault::FlipByte, kind);
        let middle = body.len() / 2;
        body[middle] ^= 0x01;
    }
    let mut up = TcpStream::connect(("127.0.0.1", shared.upstream))?;
    up.write_all(request_line.as_bytes())?;
    for header in &headers {
        up.write_all(header.as_bytes())?;
    }
    up.write_all(b"Connection: close\r\n\r\n")?;
    up.write_all(&body)?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    match fault {
        Some(Fault::Truncated) => {
            shared.record(Fault::Truncated, kind);
            let body_start = header_end(&response).unwrap_or(response.len());
            // Cut inside the body when there is one, else inside the headers.
            let cut = if body_start < response.len() {
                body_start + (response.len() - body_start) / 2
            } else {
                body_start / 2
            };
            client.write_all(&response[..cut])?;
            reset(&client);
            return Ok(());
        }
        Some(Fault::FlipByte) if !flip_request => {
            if let Some(body_start) = header_end(&response)
                && body_start < response.len()
            {
                shared.record(Fault::FlipByte, kind);
                let middle = body_start + (response.len() - body_start) / 2;
                response[middle] ^= 0x01;
            }
        }
        _ => {}
    }
    client.write_all(&response)?;
    Ok(())
}

/// Where the body of an HTTP message starts (after the blank line).
fn header_end(message: &[u8]) -> Option<usize> {
    message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// Drops the connection mid-exchange (the client sees the message end early).
fn reset(client: &TcpStream) {
    let _ = client.shutdown(Shutdown::Both);
}

fn drain(reader: &mut impl Read, n: usize) -> std::io::Result<()> {
    let mut buf = vec![0u8; n];
    reader.read_exact(&mut buf)
}
