//! The tokio adapter under tokio's paused clock, over `tokio::io::duplex` (a stream
//! that is not TCP): timers fire at their exact virtual deadlines, with no sleeping.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirestate_tokio::{eio, Config};

#[tokio::test(start_paused = true)]
async fn websocket_keepalive_on_paused_time_over_a_duplex() {
    let (mut raw, server_end) = tokio::io::duplex(1 << 16);
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await
        .expect("write");
    let start = tokio::time::Instant::now();
    let config = Config::default().keepalive(Duration::from_secs(30), Duration::from_secs(10));
    let mut ws = wirestate_tokio::accept(server_end, Arc::new(config))
        .await
        .expect("accept");
    match ws.recv().await {
        Some(Err(e)) => assert!(e.to_string().contains("keepalive"), "{e}"),
        other => panic!("expected a keepalive error, got {other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::from_secs(40));
    assert!(ws.recv().await.is_none());
    let mut wire = Vec::new();
    raw.read_to_end(&mut wire).await.expect("EOF");
    assert!(
        wire.ends_with(b"\r\n\r\n\x89\x00"),
        "{:?}",
        String::from_utf8_lossy(&wire)
    );
}

#[tokio::test(start_paused = true)]
async fn engine_io_heartbeat_on_paused_time_over_a_duplex() {
    let config = eio::Config::default().heartbeat(Duration::from_secs(25), Duration::from_secs(20));
    let server = eio::server(config).expect("server");
    let (mut raw, server_end) = tokio::io::duplex(1 << 16);
    let serving = server.clone();
    tokio::spawn(async move {
        let _ = eio::serve_connection(&serving, server_end, None).await;
    });
    let start = tokio::time::Instant::now();
    raw.write_all(b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert!(matches!(server.next_event().await, eio::Event::Open { .. }));
    match server.next_event().await {
        eio::Event::Closed { reason, .. } => assert_eq!(reason, eio::CloseReason::PingTimeout),
        other => panic!("{other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::from_secs(45));
}

#[tokio::test(start_paused = true)]
async fn an_open_websocket_keeps_the_request_only_when_asked() {
    const UPGRADE: &[u8] = b"GET /room?x=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    for keep in [false, true] {
        let (mut raw, server_end) = tokio::io::duplex(1 << 16);
        raw.write_all(UPGRADE).await.expect("write");
        let config = Config::default().keep_request(keep);
        let ws = wirestate_tokio::accept(server_end, Arc::new(config))
            .await
            .expect("accept");
        // Open either way; what it negotiated (nothing here) and, if asked, the request.
        let info = ws.handshake_info().expect("open");
        assert_eq!((info.protocol.as_deref(), info.deflate), (None, None));
        assert_eq!(
            info.request.as_ref().map(|r| r.path().to_owned()),
            keep.then(|| "/room?x=1".to_owned())
        );
        assert_eq!(ws.protocol(), None);
    }
}
