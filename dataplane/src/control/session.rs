//! A control connection: TCP inside the tunnel, carrying [`wire`] frames.
//! Sockets are bound to the WireGuard interface (`SO_BINDTODEVICE`), so
//! nothing arriving over another interface reaches the control protocol.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::wire::{self, Decoder, Message, WireError};

/// How often each side sends a keepalive.
pub const KEEPALIVE: Duration = Duration::from_secs(1);
/// Silence after which a session is considered dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(3);

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Socket I/O failed.
    #[error("control connection: {0}")]
    Io(#[from] io::Error),
    /// The peer sent something that is not a valid message.
    #[error("control connection: {0}")]
    Wire(#[from] WireError),
    /// The peer closed the connection.
    #[error("control connection closed by the peer")]
    Closed,
    /// Nothing arrived in time.
    #[error("control connection silent for {0:?}")]
    Timeout(Duration),
    /// A send did not complete in time: the peer stopped reading.
    #[error("control connection: the peer read nothing for {0:?}")]
    WriteTimeout(Duration),
}

/// Listens on `addr:port`, only on interface `ifname`.
pub fn listen(ifname: &str, addr: Ipv4Addr, port: u16) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind_device(Some(ifname.as_bytes()))?;
    socket.bind(SocketAddr::V4(SocketAddrV4::new(addr, port)))?;
    socket.listen(64)
}

/// Connects from `local` (on `ifname`) to `remote:port`, giving up after
/// `timeout`.
pub async fn connect(
    ifname: &str,
    local: Ipv4Addr,
    remote: Ipv4Addr,
    port: u16,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind_device(Some(ifname.as_bytes()))?;
    socket.bind(SocketAddr::V4(SocketAddrV4::new(local, 0)))?;
    let stream = tokio::time::timeout(
        timeout,
        socket.connect(SocketAddr::V4(SocketAddrV4::new(remote, port))),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The receiving half of a control connection.
#[derive(Debug)]
pub struct Receiver {
    read: OwnedReadHalf,
    decoder: Decoder,
    buf: Vec<u8>,
}

/// The sending half of a control connection.
#[derive(Debug)]
pub struct Sender {
    write: OwnedWriteHalf,
}

/// Splits `stream` into its two halves.
#[must_use]
pub fn split(stream: TcpStream) -> (Receiver, Sender) {
    let (read, write) = stream.into_split();
    (
        Receiver {
            read,
            decoder: Decoder::new(),
            buf: vec![0; 64 * 1024],
        },
        Sender { write },
    )
}

impl Receiver {
    /// The next message; fails after `timeout` of silence.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Message, SessionError> {
        tokio::time::timeout(timeout, self.next())
            .await
            .map_err(|_| SessionError::Timeout(timeout))?
    }

    /// The next message, however long it takes. Cancel-safe: bytes read
    /// stay in the decoder.
    pub async fn next(&mut self) -> Result<Message, SessionError> {
        loop {
            if let Some(message) = self.decoder.next_message()? {
                return Ok(message);
            }
            let n = self.read.read(&mut self.buf).await?;
            if n == 0 {
                return Err(SessionError::Closed);
            }
            self.decoder.feed(&self.buf[..n]);
        }
    }
}

impl Sender {
    /// Sends one message.
    pub async fn send(&mut self, message: &Message) -> Result<(), SessionError> {
        let frame = wire::encode(message)?;
        self.write.write_all(&frame).await?;
        Ok(())
    }

    /// Sends an error message and closes the connection.
    pub async fn refuse(mut self, message: &str) {
        let text: String = message.chars().take(wire::MAX_ERROR_LEN / 4).collect();
        let _ = self
            .send(&Message::Error(wire::ErrorMessage { message: text }))
            .await;
        let _ = self.write.shutdown().await;
    }

    /// Closes the sending direction.
    pub async fn close(mut self) {
        let _ = self.write.shutdown().await;
    }
}
