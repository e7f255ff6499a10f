//! A fault-injecting HTTP/1.1 proxy for registry tests, on 127.0.0.1 only.
//!
//! Each connection carries one request (the proxy answers `Connection: close`). Requests are
//! numbered from 1; the [`Fault`] planned for a number is applied instead of forwarding:
//! a 503, a 429 with `Retry-After: 1`, or a reset after reading part of the request body
//! (a dropped connection mid-upload). Everything else is forwarded unchanged to the upstream
//! registry (the `Host` header is kept, so the registry's absolute `Location`s point back at
//! the proxy). At most `MAX_CONNECTIONS` connections are served; the thread ends with the test.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const MAX_CONNECTIONS: usize = 2000;

/// What to do to one request.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Answer 503 Service Unavailable.
    Unavailable,
    /// Answer 429 with `Retry-After: 1`.
    TooManyRequests,
    /// Read half of the body, then reset the connection.
    ResetMidBody,
}

/// A running proxy.
pub struct FaultProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Requests seen so far.
    pub requests: Arc<AtomicUsize>,
    /// Faults applied so far.
    pub injected: Arc<AtomicUsize>,
}

impl FaultProxy {
    /// Proxies to `127.0.0.1:upstream`, applying `plan(n, method, path)` to request `n`.
    pub fn start(
        upstream: u16,
        plan: impl Fn(usize, &str, &str) -> Option<Fault> + Send + Sync + 'static,
    ) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let injected = Arc::new(AtomicUsize::new(0));
        let (seen, hits) = (requests.clone(), injected.clone());
        let plan = Arc::new(plan);
        let lock = Arc::new(Mutex::new(()));
        std::thread::spawn(move || {
            for stream in listener.incoming().take(MAX_CONNECTIONS) {
                let Ok(stream) = stream else { continue };
                let (seen, hits, plan, lock) =
                    (seen.clone(), hits.clone(), plan.clone(), lock.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, upstream, &seen, &hits, &*plan, &lock);
                });
            }
        });
        FaultProxy {
            port,
            requests,
            injected,
        }
    }
}

fn serve(
    client: TcpStream,
    upstream: u16,
    seen: &AtomicUsize,
    hits: &AtomicUsize,
    plan: &(dyn Fn(usize, &str, &str) -> Option<Fault> + Send + Sync),
    _lock: &Mutex<()>,
) -> std::io::Result<()> {
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
    let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
    let mut client = client;
    match plan(n, &method, &path) {
        Some(Fault::Unavailable) => {
            hits.fetch_add(1, Ordering::SeqCst);
            drain(&mut reader, length)?;
            client.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
            return Ok(());
        }
        Some(Fault::TooManyRequests) => {
            hits.fetch_add(1, Ordering::SeqCst);
            drain(&mut reader, length)?;
            client.write_all(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
            return Ok(());
        }
        Some(Fault::ResetMidBody) if length > 1 => {
            hits.fetch_add(1, Ordering::SeqCst);
            drain(&mut reader, length / 2)?;
            // Linger 0 would send RST; closing both directions is close enough for the client.
            client.shutdown(Shutdown::Both)?;
            return Ok(());
        }
        _ => {}
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.write_all(request_line.as_bytes())?;
    for header in &headers {
        up.write_all(header.as_bytes())?;
    }
    up.write_all(b"Connection: close\r\n\r\n")?;
    up.write_all(&body)?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    client.write_all(&response)?;
    Ok(())
}

fn drain(reader: &mut impl Read, n: usize) -> std::io::Result<()> {
    let mut buf = vec![0u8; n];
    reader.read_exact(&mut buf)
}
