//! The admin API: a root-only Unix socket speaking one JSON request per line
//! and one JSON response per line.
//!
//! ```text
//! → {"cmd":"fdb","vni":100}
//! ← {"type":"fdb","data":[{"vni":100,"mac":"02:00:00:00:00:01",…}]}
//! ```
//!
//! The daemon implements [`ApiHandler`] and runs [`serve`] (or [`bind`] then
//! [`serve_listener`], to report ready only once the socket exists);
//! `vlnet ctl` calls [`request`].

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::advise::{Advice, Thresholds};
use crate::conn_limit::{self, Conn, ConnLimit, Limits, Tracked};
use crate::control::{ClientRecord, JoinReport, LeaveReport};
use crate::flows::{FlowQuery, FlowRecord};
use crate::mac::MacAddr;
use crate::model::{EvpnReport, FdbRecord, NodeStatus, PeerStatus, ReloadReport};
use crate::moves::MoveRecord;
use crate::node::NodeError;

/// Longest request line the daemon accepts, newline excluded.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;
/// How long the client waits for the daemon to answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `join` may take (WireGuard handshake and control connection).
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Mode of the socket file: only root may talk to the daemon.
pub const SOCKET_MODE: u32 = 0o600;
/// Mode of the socket's directory when the API creates it.
pub const SOCKET_DIR_MODE: u32 = 0o700;

/// A request to the daemon, `{"cmd": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Node-wide state.
    Status,
    /// Remote VTEPs and their traffic.
    Peers,
    /// MAC locations, of one VNI or all.
    Fdb {
        /// Only this VNI; all when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vni: Option<u32>,
    },
    /// The EVPN speaker's sessions and VNIs.
    Evpn,
    /// Stop the daemon (pinned programs keep forwarding).
    Shutdown,
    /// Read the config file again and apply the difference.
    Reload,
    /// Controller: open an invite and return its token.
    ClientAdd {
        /// The client's name.
        name: String,
        /// VNIs to grant.
        vnis: Vec<u32>,
        /// Seconds the token stays valid.
        ttl_secs: u64,
        /// For a class: how many clients may join with the token (each
        /// becoming its own member `NAME-k`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uses: Option<u32>,
    },
    /// Controller: members and open invites.
    ClientList,
    /// Controller: revoke a member or an invite.
    ClientRemove {
        /// Its name.
        name: String,
    },
    /// MAC moves seen by the data plane, oldest first.
    Moves,
    /// A VM now lives here (for hypervisors that do not announce): send its
    /// announce and advertise its MAC.
    VmMoved {
        /// The VM's MAC.
        mac: MacAddr,
        /// Its VNI, or
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vni: Option<u32>,
        /// the bridge it hangs on (as a hypervisor knows it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bridge: Option<String>,
    },
    /// Controller: member `to` may take `mac` on `vni` once within
    /// `ttl_secs` (a VM live-migrating to it).
    VmMove {
        /// The VM's MAC.
        mac: MacAddr,
        /// Its VNI.
        vni: u32,
        /// The member it moves to.
        to: String,
        /// How long the permission lasts, seconds.
        ttl_secs: u64,
    },
    /// Inner flows tracked in the kernel.
    Flows(FlowQuery),
    /// Placement advice for the VMs on this node.
    Advise {
        /// Smallest saving of traffic-weighted RTT worth a move, ms.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_gain_ms: Option<f64>,
        /// Smallest saving as a fraction of the current RTT.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_gain_fraction: Option<f64>,
    },
    /// Member: redeem an invite token.
    Join {
        /// The token.
        token: String,
    },
    /// Member: leave the cluster (the controller removes this member).
    Leave {
        /// Forget the membership here without telling the controller.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        force: bool,
    },
}

/// The daemon's answer, `{"type": "...", "data": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Status`].
    Status(NodeStatus),
    /// Answer to [`Request::Peers`].
    Peers(Vec<PeerStatus>),
    /// Answer to [`Request::Fdb`].
    Fdb(Vec<FdbRecord>),
    /// Answer to [`Request::ClientAdd`].
    Token {
        /// The invite token, single-use.
        token: String,
    },
    /// Answer to [`Request::ClientList`].
    Clients(Vec<ClientRecord>),
    /// Answer to [`Request::Join`].
    Joined(JoinReport),
    /// Answer to [`Request::Leave`].
    Left(LeaveReport),
    /// Answer to [`Request::Moves`].
    Moves(Vec<MoveRecord>),
    /// Answer to [`Request::Reload`].
    Reloaded(ReloadReport),
    /// Answer to [`Request::Flows`].
    Flows(Vec<FlowRecord>),
    /// Answer to [`Request::Advise`].
    Advice(Vec<Advice>),
    /// Answer to [`Request::Evpn`].
    Evpn(EvpnReport),
    /// The request was carried out (e.g. shutdown).
    Ok,
    /// The request was malformed, refused or failed.
    Error {
        /// What kind of failure, for programs (absent from older daemons).
        #[serde(default)]
        kind: ErrorKind,
        /// What went wrong, for a human.
        message: String,
    },
}

/// What kind of failure a [`Response::Error`] reports: stable names, for
/// scripts to tell a retry worth trying from a request to fix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request (or the config file it reads) is wrong: fix it.
    Invalid,
    /// It names something that does not exist.
    NotFound,
    /// It clashes with the state (a name taken, a VNI full, already joined).
    Conflict,
    /// The change could not be written to disk, so it was not made.
    PersistFailed,
    /// This node cannot do it now or in its role (no control plane, still
    /// starting, no session with the controller): retry later or elsewhere.
    Unavailable,
    /// Another party (the controller) refused it.
    Refused,
    /// The system failed while carrying it out (or the kind is unknown).
    #[default]
    Failed,
}

impl Response {
    /// The answer to a request that failed with `error`: its kind and its
    /// message, mapped here once for every request.
    #[must_use]
    pub fn error(error: &NodeError) -> Self {
        Self::Error {
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}

/// What the daemon provides to the API. Calls run on a blocking thread, so
/// they may do syscalls (map reads).
pub trait ApiHandler: Send + Sync + 'static {
    /// Node-wide state.
    fn status(&self) -> Result<NodeStatus, NodeError>;
    /// Remote VTEPs and their counters.
    fn peers(&self) -> Result<Vec<PeerStatus>, NodeError>;
    /// FDB entries, of `vni` or of all VNIs.
    fn fdb(&self, vni: Option<u32>) -> Result<Vec<FdbRecord>, NodeError>;
    /// Begin an orderly shutdown; the API answers `Ok` after this returns.
    fn shutdown(&self);
    /// Opens an invite, for a class of `uses` clients when given
    /// (controller only).
    fn client_add(
        &self,
        name: &str,
        vnis: &[u32],
        ttl_secs: u64,
        uses: Option<u32>,
    ) -> Result<String, NodeError> {
        let _ = (name, vnis, ttl_secs, uses);
        Err(NodeError::NoControlPlane)
    }
    /// Members and invites (controller only).
    fn client_list(&self) -> Result<Vec<ClientRecord>, NodeError> {
        Err(NodeError::NoControlPlane)
    }
    /// Revokes a member or invite (controller only).
    fn client_remove(&self, name: &str) -> Result<(), NodeError> {
        let _ = name;
        Err(NodeError::NoControlPlane)
    }
    /// Announces and advertises a VM that moved here.
    fn vm_moved(
        &self,
        mac: MacAddr,
        vni: Option<u32>,
        bridge: Option<&str>,
    ) -> Result<(), NodeError> {
        let _ = (mac, vni, bridge);
        Err(NodeError::NoControlPlane)
    }
    /// Controller: lets member `to` take `mac` on `vni` once.
    fn vm_move(&self, mac: MacAddr, vni: u32, to: &str, ttl_secs: u64) -> Result<(), NodeError> {
        let _ = (mac, vni, to, ttl_secs);
        Err(NodeError::NoControlPlane)
    }
    /// Inner flows tracked in the kernel, as `query` selects them.
    fn flows(&self, query: FlowQuery) -> Result<Vec<FlowRecord>, NodeError> {
        let _ = query;
        Ok(Vec::new())
    }
    /// Placement advice for the local VMs with tunnel traffic.
    fn advise(&self, thresholds: Thresholds) -> Result<Vec<Advice>, NodeError> {
        let _ = thresholds;
        Ok(Vec::new())
    }
    /// MAC moves seen by the data plane.
    fn moves(&self) -> Result<Vec<MoveRecord>, NodeError> {
        Ok(Vec::new())
    }
    /// Redeems an invite token (member only). May block for seconds.
    fn join(&self, token: &str) -> Result<JoinReport, NodeError> {
        let _ = token;
        Err(NodeError::NoControlPlane)
    }
    /// Leaves the cluster (member only). May block for seconds.
    fn leave(&self, force: bool) -> Result<LeaveReport, NodeError> {
        let _ = force;
        Err(NodeError::NoControlPlane)
    }
    /// Read the config file again and apply the difference.
    fn reload(&self) -> Result<ReloadReport, NodeError> {
        Err(NodeError::CannotReload)
    }
    /// The EVPN speaker's sessions and VNIs.
    fn evpn(&self) -> Result<EvpnReport, NodeError> {
        Err(NodeError::NoEvpn)
    }
}

/// Why the API could not be served or asked.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The socket's directory could not be created.
    #[error("cannot create API socket directory {}: {source}", path.display())]
    CreateDir {
        /// Directory path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The socket path has no parent directory or file name.
    #[error("API socket path {} is not a file path", path.display())]
    BadPath {
        /// Socket path.
        path: PathBuf,
    },
    /// Something other than a socket sits at the socket path.
    #[error("{} exists and is not a socket; remove it or choose another node.api_socket", path.display())]
    NotASocket {
        /// Socket path.
        path: PathBuf,
    },
    /// Another daemon answers on the socket.
    #[error("another `vlnet daemon` is already listening on {}", path.display())]
    InUse {
        /// Socket path.
        path: PathBuf,
    },
    /// Binding, setting the mode of or moving the socket failed.
    #[error("cannot bind API socket {}: {source}", path.display())]
    Bind {
        /// Socket path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The client found no daemon at the socket.
    #[error(
        "cannot connect to {}: {source}; is `vlnet daemon` running for this node? \
         (systemctl status vlnet)",
        path.display()
    )]
    NotRunning {
        /// Socket path.
        path: PathBuf,
        /// The I/O error (not found, refused).
        source: io::Error,
    },
    /// The client may not use the socket.
    #[error(
        "cannot connect to {}: permission denied; vlnet ctl needs root (the admin socket is root's)",
        path.display()
    )]
    NotRoot {
        /// Socket path.
        path: PathBuf,
    },
    /// The client could not connect for another reason.
    #[error("cannot connect to {}: {source}", path.display())]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Sending the request or reading the answer failed (or timed out).
    #[error("talking to the daemon on {}: {source}", path.display())]
    Io {
        /// Socket path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The daemon answered something that is not a [`Response`].
    #[error("the daemon on {} sent a malformed answer: {message}", path.display())]
    BadResponse {
        /// Socket path.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
}

/// Binds the API socket and serves it until the task is dropped.
pub async fn serve(socket: &Path, handler: Arc<dyn ApiHandler>) -> Result<(), ApiError> {
    let listener = bind(socket)?;
    serve_listener(listener, handler).await
}

/// Binds the API socket, mode 0600, creating its directory (mode 0700) if
/// missing and replacing a stale socket file. Must run inside a tokio
/// runtime.
///
/// The socket is bound under a temporary name, restricted, then renamed into
/// place, so there is no moment where anyone but root can connect.
pub fn bind(socket: &Path) -> Result<UnixListener, ApiError> {
    let bad_path = || ApiError::BadPath {
        path: socket.to_owned(),
    };
    let dir = socket.parent().ok_or_else(bad_path)?;
    let name = socket.file_name().ok_or_else(bad_path)?;
    if !dir.as_os_str().is_empty() && !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(SOCKET_DIR_MODE)
            .create(dir)
            .map_err(|source| ApiError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
    }
    remove_stale(socket)?;

    let bind_err = |source| ApiError::Bind {
        path: socket.to_owned(),
        source,
    };
    let mut tmp_name = name.to_owned();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = socket.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(bind_err)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(SOCKET_MODE))
        .and_then(|()| std::fs::rename(&tmp, socket));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(bind_err(e));
    }
    Ok(listener)
}

/// Removes a socket file nobody answers on; refuses to touch anything else.
fn remove_stale(socket: &Path) -> Result<(), ApiError> {
    let meta = match std::fs::symlink_metadata(socket) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ApiError::Bind {
                path: socket.to_owned(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ApiError::NotASocket {
            path: socket.to_owned(),
        });
    }
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Err(ApiError::InUse {
            path: socket.to_owned(),
        });
    }
    std::fs::remove_file(socket).map_err(|source| ApiError::Bind {
        path: socket.to_owned(),
        source,
    })
}

/// Bounds of the admin API's listener. The socket is root-only, so these
/// guard against a stuck or buggy local client rather than an attacker.
///
/// - 32 connections: `vlnet ctl` opens one per command; the hookscript and
///   monitoring run a few at once at most.
/// - 5 s to send a request, from the connection (or the previous answer) to
///   the end of its line: `vlnet ctl` sends at once. An idle connection is
///   closed after it, as a slow one.
pub const API_LIMITS: Limits = Limits {
    max_conns: 32,
    idle_timeout: Duration::from_secs(5),
    read_timeout: Duration::from_secs(5),
};

/// How long writing one answer may take before the connection is closed
/// (a client that does not read).
pub const API_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves connections on an already bound listener under [`API_LIMITS`],
/// each in its own task, until the task running this is dropped.
pub async fn serve_listener(
    listener: UnixListener,
    handler: Arc<dyn ApiHandler>,
) -> Result<(), ApiError> {
    let limit = ConnLimit::new("admin API", API_LIMITS);
    conn_limit::serve(listener, limit, move |stream, _, conn| {
        let handler = Arc::clone(&handler);
        async move {
            if let Err(e) = handle_connection(stream, &conn, handler).await {
                tracing::debug!(error = %e, "admin API connection ended with an error");
            }
        }
    })
    .await;
    Ok(())
}

async fn handle_connection(
    stream: Tracked<UnixStream>,
    conn: &Conn,
    handler: Arc<dyn ApiHandler>,
) -> io::Result<()> {
    let mut stream = tokio::io::BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = (MAX_REQUEST_LINE + 1) as u64;
        let n = (&mut stream)
            .take(limit)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let _busy = conn.busy();
        let complete = line.last() == Some(&b'\n');
        if complete {
            line.pop();
        }
        if line.len() > MAX_REQUEST_LINE {
            let refusal = Response::Error {
                kind: ErrorKind::Invalid,
                message: format!(
                    "request line longer than {MAX_REQUEST_LINE} bytes; closing the connection"
                ),
            };
            send(&mut stream, &refusal).await?;
            return Ok(());
        }
        let response = match serde_json::from_slice::<Request>(&line) {
            Ok(request) => dispatch(Arc::clone(&handler), request).await,
            Err(e) => Response::Error {
                kind: ErrorKind::Invalid,
                message: format!(
                    "malformed request: {e}; send one JSON object per line, \
                     e.g. {{\"cmd\":\"status\"}}"
                ),
            },
        };
        send(&mut stream, &response).await?;
        if !complete {
            return Ok(());
        }
    }
}

async fn dispatch(handler: Arc<dyn ApiHandler>, request: Request) -> Response {
    let answer = tokio::task::spawn_blocking(move || match request {
        Request::Status => handler.status().map(Response::Status),
        Request::Peers => handler.peers().map(Response::Peers),
        Request::Fdb { vni } => handler.fdb(vni).map(Response::Fdb),
        Request::Shutdown => {
            handler.shutdown();
            Ok(Response::Ok)
        }
        Request::ClientAdd {
            name,
            vnis,
            ttl_secs,
            uses,
        } => handler
            .client_add(&name, &vnis, ttl_secs, uses)
            .map(|token| Response::Token { token }),
        Request::ClientList => handler.client_list().map(Response::Clients),
        Request::ClientRemove { name } => handler.client_remove(&name).map(|()| Response::Ok),
        Request::Join { token } => handler.join(&token).map(Response::Joined),
        Request::Leave { force } => handler.leave(force).map(Response::Left),
        Request::Reload => handler.reload().map(Response::Reloaded),
        Request::Evpn => handler.evpn().map(Response::Evpn),
        Request::Moves => handler.moves().map(Response::Moves),
        Request::Flows(query) => handler.flows(query).map(Response::Flows),
        Request::Advise {
            min_gain_ms,
            min_gain_fraction,
        } => thresholds(min_gain_ms, min_gain_fraction)
            .and_then(|th| handler.advise(th))
            .map(Response::Advice),
        Request::VmMoved { mac, vni, bridge } => handler
            .vm_moved(mac, vni, bridge.as_deref())
            .map(|()| Response::Ok),
        Request::VmMove {
            mac,
            vni,
            to,
            ttl_secs,
        } => handler
            .vm_move(mac, vni, &to, ttl_secs)
            .map(|()| Response::Ok),
    })
    .await;
    match answer.map_err(NodeError::from).and_then(|a| a) {
        Ok(response) => response,
        Err(e) => Response::error(&e),
    }
}

/// The advice thresholds a request asks for (defaults where absent),
/// refusing values that make no sense.
fn thresholds(min_gain_ms: Option<f64>, fraction: Option<f64>) -> Result<Thresholds, NodeError> {
    let mut th = Thresholds::default();
    if let Some(ms) = min_gain_ms {
        if !(ms.is_finite() && ms >= 0.0) {
            return Err(NodeError::BadThreshold {
                name: "min_gain_ms",
                range: "a number >= 0",
                value: ms,
            });
        }
        #[allow(clippy::cast_sign_loss, reason = "checked non-negative above")]
        let ns = (ms * 1e6) as u64;
        th.min_gain_ns = ns;
    }
    if let Some(f) = fraction {
        if !(0.0..=1.0).contains(&f) {
            return Err(NodeError::BadThreshold {
                name: "min_gain_fraction",
                range: "within 0..=1",
                value: f,
            });
        }
        th.min_gain_fraction = f;
    }
    Ok(th)
}

/// Writes one answer line, within [`API_WRITE_TIMEOUT`].
async fn send(stream: &mut (impl AsyncWrite + Unpin), response: &Response) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(response).map_err(io::Error::other)?;
    bytes.push(b'\n');
    tokio::time::timeout(API_WRITE_TIMEOUT, stream.write_all(&bytes))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read its answer in time",
            )
        })?
}

/// Sends one request to the daemon at `socket` and waits (at most
/// [`CLIENT_TIMEOUT`] per read or write, [`JOIN_TIMEOUT`] for a join, a
/// leave or a reload) for
/// its answer. Blocking.
pub fn request(socket: &Path, req: &Request) -> Result<Response, ApiError> {
    let timeout = if matches!(
        req,
        Request::Join { .. } | Request::Leave { .. } | Request::Reload
    ) {
        JOIN_TIMEOUT
    } else {
        CLIENT_TIMEOUT
    };
    let path = || socket.to_owned();
    let stream =
        std::os::unix::net::UnixStream::connect(socket).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ApiError::NotRunning {
                path: path(),
                source,
            },
            io::ErrorKind::PermissionDenied => ApiError::NotRoot { path: path() },
            _ => ApiError::Connect {
                path: path(),
                source,
            },
        })?;
    let io_err = |source| ApiError::Io {
        path: path(),
        source,
    };
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(io_err)?;

    let mut line = serde_json::to_vec(req).map_err(|e| io_err(io::Error::other(e)))?;
    line.push(b'\n');
    (&stream).write_all(&line).map_err(io_err)?;

    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(io_err)?;
    if answer.is_empty() {
        return Err(io_err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection without answering",
        )));
    }
    serde_json::from_str(&answer).map_err(|e| ApiError::BadResponse {
        path: path(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::model::{DatapathMode, DropCount, FdbKind, VniStatus};

    #[derive(Default)]
    struct Fake {
        shut_down: AtomicBool,
    }

    fn status() -> NodeStatus {
        NodeStatus {
            node: "pve1".into(),
            vtep: Ipv4Addr::new(198, 18, 0, 1),
            underlay: "eth0".into(),
            datapath: DatapathMode::Tc,
            underlay_mtu: 1500,
            pid: 42,
            uptime_secs: 7,
            adopted: false,
            links: Vec::new(),
            vnis: vec![VniStatus {
                vni: 100,
                bridge: "vnet100".into(),
                port: "vl100".into(),
                peers: 1,
                fdb_entries: 2,
                bypass: None,
            }],
            drops: vec![DropCount {
                reason: "truncated".into(),
                packets: 3,
            }],
            relay: false,
            relayed: Vec::new(),
            member: None,
            suppression: crate::model::Suppression::default(),
        }
    }

    fn peers() -> Vec<PeerStatus> {
        vec![PeerStatus {
            vni: 100,
            vtep: Ipv4Addr::new(198, 18, 0, 2),
            rx_packets: 1,
            rx_bytes: 2,
            tx_packets: 3,
            tx_bytes: 4,
            next_hop: "02:00:00:00:00:02".to_owned(),
            rtt_ns: None,
        }]
    }

    fn fdb() -> Vec<FdbRecord> {
        vec![
            FdbRecord {
                vni: 100,
                mac: "02:00:00:00:00:01".into(),
                vtep: Ipv4Addr::new(198, 18, 0, 2),
                kind: FdbKind::Learned,
                age_secs: 5,
            },
            FdbRecord {
                vni: 200,
                mac: "02:00:00:00:00:02".into(),
                vtep: Ipv4Addr::new(198, 18, 0, 3),
                kind: FdbKind::Static,
                age_secs: 0,
            },
        ]
    }

    impl ApiHandler for Fake {
        fn status(&self) -> Result<NodeStatus, NodeError> {
            Ok(status())
        }
        fn peers(&self) -> Result<Vec<PeerStatus>, NodeError> {
            Ok(peers())
        }
        fn fdb(&self, vni: Option<u32>) -> Result<Vec<FdbRecord>, NodeError> {
            if vni == Some(999) {
                return Err(NodeError::VniNotServed(999));
            }
            Ok(fdb()
                .into_iter()
                .filter(|r| vni.is_none_or(|v| r.vni == v))
                .collect())
        }
        fn shutdown(&self) {
            self.shut_down.store(true, Ordering::SeqCst);
        }
    }

    async fn ask(socket: &Path, req: Request) -> Result<Response, ApiError> {
        let socket = socket.to_owned();
        tokio::task::spawn_blocking(move || request(&socket, &req))
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn round_trip_every_request() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run/vlnet.sock");
        let fake = Arc::new(Fake::default());
        let listener = bind(&socket).unwrap();
        let server = tokio::spawn(serve_listener(listener, fake.clone()));

        assert_eq!(
            ask(&socket, Request::Status).await.unwrap(),
            Response::Status(status())
        );
        assert_eq!(
            ask(&socket, Request::Peers).await.unwrap(),
            Response::Peers(peers())
        );
        assert_eq!(
            ask(&socket, Request::Fdb { vni: None }).await.unwrap(),
            Response::Fdb(fdb())
        );
        assert_eq!(
            ask(&socket, Request::Fdb { vni: Some(200) }).await.unwrap(),
            Response::Fdb(fdb()[1..].to_vec())
        );
        assert_eq!(
            ask(&socket, Request::Fdb { vni: Some(999) }).await.unwrap(),
            Response::Error {
                kind: ErrorKind::NotFound,
                message: "VNI 999 is not served by this node".into()
            }
        );
        assert!(!fake.shut_down.load(Ordering::SeqCst));
        assert_eq!(ask(&socket, Request::Shutdown).await.unwrap(), Response::Ok);
        assert!(fake.shut_down.load(Ordering::SeqCst));
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn socket_is_root_only_and_dir_created_private() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("sub/vlnet.sock");
        let _listener = bind(&socket).unwrap();
        let meta = std::fs::metadata(&socket).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let dir_mode = std::fs::metadata(dir.path().join("sub"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        // No temporary socket left behind.
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stale_socket_replaced_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("vlnet.sock");
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        assert!(socket.exists());
        let live = bind(&socket).unwrap();
        let err = bind(&socket).unwrap_err();
        assert!(matches!(err, ApiError::InUse { .. }), "{err}");
        drop(live);

        let file = dir.path().join("plain");
        std::fs::write(&file, b"keep me").unwrap();
        let err = bind(&file).unwrap_err();
        assert!(matches!(err, ApiError::NotASocket { .. }), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn garbage_gets_an_error_and_the_connection_keeps_answering() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("vlnet.sock");
        let server = tokio::spawn(serve_listener(
            bind(&socket).unwrap(),
            Arc::new(Fake::default()),
        ));

        let stream = UnixStream::connect(&socket).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = tokio::io::BufReader::new(read).lines();
        let mut next = async |send: &[u8]| -> Response {
            write.write_all(send).await.unwrap();
            let line = lines.next_line().await.unwrap().unwrap();
            serde_json::from_str(&line).unwrap()
        };

        for (garbage, expect) in [
            (&b"garbage\n"[..], "expected value"),
            (b"{\"cmd\":\"reboot\"}\n", "unknown variant `reboot`"),
            (b"{\"cmd\":\"fdb\",\"vni\":\"x\"}\n", "invalid type"),
            (b"\xff\xfe\n", "malformed request"),
            (b"\n", "malformed request"),
        ] {
            match next(garbage).await {
                Response::Error { kind, message } => {
                    assert!(message.contains(expect), "{message}");
                    assert_eq!(kind, ErrorKind::Invalid, "{message}");
                }
                other => panic!("expected an error, got {other:?}"),
            }
        }
        assert_eq!(
            next(b"{\"cmd\":\"status\"}\n").await,
            Response::Status(status())
        );
        assert_eq!(
            next(b"{\"cmd\":\"fdb\",\"vni\":100}\n").await,
            Response::Fdb(fdb()[..1].to_vec())
        );
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oversized_line_refused() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("vlnet.sock");
        let server = tokio::spawn(serve_listener(
            bind(&socket).unwrap(),
            Arc::new(Fake::default()),
        ));
        let stream = UnixStream::connect(&socket).await.unwrap();
        let (read, mut write) = stream.into_split();
        let big = vec![b' '; MAX_REQUEST_LINE + 10];
        // The server may close before reading everything; ignore write errors.
        let _ = write.write_all(&big).await;
        let mut answer = String::new();
        tokio::io::BufReader::new(read)
            .read_to_string(&mut answer)
            .await
            .unwrap();
        let first = answer.lines().next().unwrap();
        match serde_json::from_str(first).unwrap() {
            Response::Error { message, .. } => {
                assert!(message.contains("longer than"), "{message}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_is_answered_past_a_cap_full_of_silent_connections() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("vlnet.sock");
        let server = tokio::spawn(serve_listener(
            bind(&socket).unwrap(),
            Arc::new(Fake::default()),
        ));
        let mut silent = Vec::new();
        for _ in 0..3 * API_LIMITS.max_conns {
            silent.push(UnixStream::connect(&socket).await.unwrap());
        }
        let started = std::time::Instant::now();
        assert_eq!(
            ask(&socket, Request::Status).await.unwrap(),
            Response::Status(status())
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        let evicted = crate::conn_limit::tests::closed_count(silent).await;
        assert_eq!(evicted, 2 * API_LIMITS.max_conns + 1);
        server.abort();
    }

    #[test]
    fn missing_socket_says_daemon_not_running() {
        let err = request(Path::new("/nonexistent/vlnet.sock"), &Request::Status).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("/nonexistent/vlnet.sock"), "{shown}");
        assert!(
            shown.contains("is `vlnet daemon` running for this node?"),
            "{shown}"
        );
    }

    #[test]
    fn wire_format_is_stable() {
        let json = |r: &Request| serde_json::to_string(r).unwrap();
        assert_eq!(json(&Request::Status), r#"{"cmd":"status"}"#);
        assert_eq!(json(&Request::Evpn), r#"{"cmd":"evpn"}"#);
        assert_eq!(json(&Request::Fdb { vni: None }), r#"{"cmd":"fdb"}"#);
        assert_eq!(
            json(&Request::Fdb { vni: Some(5) }),
            r#"{"cmd":"fdb","vni":5}"#
        );
        assert_eq!(json(&Request::Shutdown), r#"{"cmd":"shutdown"}"#);
        assert_eq!(json(&Request::Leave { force: false }), r#"{"cmd":"leave"}"#);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"leave","force":true}"#).unwrap(),
            Request::Leave { force: true }
        );
        // An older `vlnet ctl` asks for a one-client invite.
        assert_eq!(
            serde_json::from_str::<Request>(
                r#"{"cmd":"client_add","name":"a","vnis":[100],"ttl_secs":60}"#
            )
            .unwrap(),
            Request::ClientAdd {
                name: "a".into(),
                vnis: vec![100],
                ttl_secs: 60,
                uses: None
            }
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"fdb"}"#).unwrap(),
            Request::Fdb { vni: None }
        );
        let flows = Request::Flows(crate::flows::FlowQuery {
            vni: Some(100),
            top: Some(5),
            sort: crate::flows::FlowSort::Rtt,
        });
        assert_eq!(
            json(&flows),
            r#"{"cmd":"flows","vni":100,"top":5,"sort":"rtt"}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"flows","vni":100,"top":5,"sort":"rtt"}"#)
                .unwrap(),
            flows
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"flows","vnii":1}"#).is_err());
        assert_eq!(
            serde_json::to_string(&Response::Ok).unwrap(),
            r#"{"type":"ok"}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::Error {
                kind: ErrorKind::NotFound,
                message: "no".into()
            })
            .unwrap(),
            r#"{"type":"error","data":{"kind":"not_found","message":"no"}}"#
        );
        // An older daemon's error has no kind.
        assert_eq!(
            serde_json::from_str::<Response>(r#"{"type":"error","data":{"message":"no"}}"#)
                .unwrap(),
            Response::Error {
                kind: ErrorKind::Failed,
                message: "no".into()
            }
        );
        let names: Vec<String> = [
            ErrorKind::Invalid,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::PersistFailed,
            ErrorKind::Unavailable,
            ErrorKind::Refused,
            ErrorKind::Failed,
        ]
        .iter()
        .map(|k| serde_json::to_string(k).unwrap())
        .collect();
        assert_eq!(
            names,
            [
                r#""invalid""#,
                r#""not_found""#,
                r#""conflict""#,
                r#""persist_failed""#,
                r#""unavailable""#,
                r#""refused""#,
                r#""failed""#
            ]
        );
    }

    #[test]
    fn advice_thresholds_out_of_range_are_invalid() {
        assert!(thresholds(Some(1.5), Some(0.5)).is_ok());
        for (ms, fraction) in [
            (Some(-1.0), None),
            (Some(f64::NAN), None),
            (None, Some(1.5)),
        ] {
            let err = thresholds(ms, fraction).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
            assert!(matches!(err, NodeError::BadThreshold { .. }), "{err}");
        }
    }
}
