//! `RUN --mount=type=ssh`: a socket in the sandbox that forwards each connection to an SSH
//! agent of the host, as BuildKit's SSH forwarding does. The command can ask the agent to sign
//! but never reads a key; the agent's own socket, and its path, stay outside the sandbox, and
//! the proxy socket gets the owner and mode the mount asks for.

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::{SandboxError, io_error};

/// A listening proxy of one agent, stopped when dropped.
pub struct AgentProxy {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    accepting: Option<JoinHandle<()>>,
    // Last: removed after the thread has stopped.
    _dir: tempfile::TempDir,
}

impl AgentProxy {
    /// Listens on a new socket that forwards to the agent at `agent`.
    pub fn start(agent: &Path) -> Result<AgentProxy, SandboxError> {
        // A socket's path holds at most 107 bytes: a short private directory, not the cache.
        let dir = tempfile::Builder::new()
            .prefix("kiln-ssh-")
            .tempdir()
            .map_err(io_error("create a directory in", &std::env::temp_dir()))?;
        let path = dir.path().join("agent");
        let listener = UnixListener::bind(&path).map_err(io_error("listen on", &path))?;
        let stop = Arc::new(AtomicBool::new(false));
        let accepting = {
            let stop = stop.clone();
            let agent = agent.to_owned();
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(client) = client {
                        let agent = agent.clone();
                        std::thread::spawn(move || forward(client, &agent));
                    }
                }
            })
        };
        Ok(AgentProxy {
            path,
            stop,
            accepting: Some(accepting),
            _dir: dir,
        })
    }

    /// The proxy's socket.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(thread) = self.accepting.take() {
            let _ = thread.join();
        }
    }
}

/// Copies both ways between a client and a new connection to the agent until either closes.
fn forward(client: UnixStream, agent: &Path) {
    let Ok(upstream) = UnixStream::connect(agent) else {
        return;
    };
    let (Ok(mut client_in), Ok(mut upstream_out)) = (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let requests = std::thread::spawn(move || {
        let _ = io::copy(&mut client_in, &mut upstream_out);
        let _ = upstream_out.shutdown(std::net::Shutdown::Write);
    });
    let (mut upstream_in, mut client_out) = (upstream, client);
    let _ = io::copy(&mut upstream_in, &mut client_out);
    let _ = client_out.shutdown(std::net::Shutdown::Write);
    let _ = requests.join();
}
