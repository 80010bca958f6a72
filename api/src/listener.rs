//! The server's TCP listener: every accepted connection gets `TCP_NODELAY`.
//!
//! Without it, each SSE frame after the first, and each small answer on a
//! kept-alive connection, waits for the client's delayed ACK (Nagle's
//! algorithm): about 40 ms per event on Linux. Owns the socket options of
//! accepted connections; it must never drop a connection it accepted.

use axum::serve::{ListenerExt, TapIo};
use tokio::net::{TcpListener, TcpStream};

/// The listener `retrace serve` (and the tests' servers) hand to axum.
pub type Listener = TapIo<TcpListener, fn(&mut TcpStream)>;

/// Wraps `tcp` so that every connection it accepts has `TCP_NODELAY` set.
pub fn no_delay(tcp: TcpListener) -> Listener {
    tcp.tap_io(set_no_delay as fn(&mut TcpStream))
}

fn set_no_delay(stream: &mut TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        // The connection still works, only slower: not a reason to drop it.
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
    }
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener as _;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_no_delay() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut listener = no_delay(tcp);
        let client = tokio::spawn(async move { TcpStream::connect(addr).await });
        let (accepted, _) = listener.accept().await;
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY is set");
        drop(client.await.unwrap().unwrap());
    }
}
