//! TLS (rustls over any transport) on the in-memory runtime: handshakes, large and
//! many messages both ways through small pipes, and refusals. The certificate is a
//! fixture (tests/tls/: a test CA, and a leaf for `localhost` and 127.0.0.1).

#![cfg(feature = "rustls")]

use std::sync::Arc;
use std::time::Duration;

use wirestate_async::mem::{duplex, Sim};
use wirestate_async::tls::{TlsAcceptor, TlsConnector};
use wirestate_async::{eio, sio, Connector};
use wirestate_async::{Acceptor, Runtime};
use wirestate_engine::ws::{ClientRequest, Config, Message};

const CA: &[u8] = include_bytes!("tls/ca.pem");
const CERT: &[u8] = include_bytes!("tls/cert.pem");
const KEY: &[u8] = include_bytes!("tls/key.pem");

fn acceptor() -> TlsAcceptor {
    TlsAcceptor::from_pem(CERT, KEY).expect("the fixture's certificate and key")
}

fn connector() -> TlsConnector {
    TlsConnector::from_ca_pem(CA).expect("the fixture's CA")
}

#[test]
fn websocket_echo_over_tls_through_small_pipes() {
    let sim = Sim::new();
    let received = sim.block_on(async {
        // 2 KiB pipes: records, handshake flights and messages all split across reads.
        let (client_end, server_end) = duplex(2048);
        let rt = sim.clone();
        sim.spawn(async move {
            let tls = acceptor()
                .accept(server_end)
                .await
                .expect("server handshake");
            let config = Arc::new(Config::default());
            let mut ws = wirestate_async::accept(&rt, tls, config)
                .await
                .expect("accept");
            while let Some(Ok(m)) = ws.recv().await {
                if ws.send(m).await.is_err() {
                    break;
                }
            }
        });
        let tls = connector()
            .connect("localhost", client_end)
            .await
            .expect("client handshake");
        let request = ClientRequest::from_url("ws://localhost/echo").expect("url");
        let mut ws = wirestate_async::client(&sim, tls, &request, Arc::new(Config::default()))
            .await
            .expect("upgrade");
        let sizes = [0usize, 1, 100, 16_000, 16_385, 70_000, 1 << 20];
        let mut received = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            // Each echo is read before the next send: neither side reads while it
            // waits for its send to be written.
            ws.send(Message::Binary(vec![i as u8; *size].into()))
                .await
                .expect("send");
            match ws.recv().await {
                Some(Ok(Message::Binary(b))) => received.push((b.len(), b.first().copied())),
                other => panic!("expected an echo, got {other:?}"),
            }
        }
        received
    });
    let expected: Vec<_> = [0usize, 1, 100, 16_000, 16_385, 70_000, 1 << 20]
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, (*s > 0).then_some(i as u8)))
        .collect();
    assert_eq!(received, expected);
    assert_eq!(sim.elapsed(), Duration::ZERO, "nothing waited on a timer");
}

#[test]
fn a_client_that_does_not_trust_the_server_fails_with_a_clear_error() {
    let sim = Sim::new();
    let (client_end, server_end) = duplex(4096);
    sim.spawn(async move {
        let _ = acceptor().accept(server_end).await;
    });
    let untrusting = TlsConnector::from_ca_pem(CERT).expect("a CA store of the leaf alone");
    let error = sim
        .block_on(untrusting.connect("localhost", client_end))
        .expect_err("an untrusted certificate");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    assert!(error.to_string().contains("certificate"), "{error}");
    // A name the certificate is not for fails too.
    let (client_end, server_end) = duplex(4096);
    sim.spawn(async move {
        let _ = acceptor().accept(server_end).await;
    });
    let error = sim
        .block_on(connector().connect("example.com", client_end))
        .expect_err("the wrong name");
    assert!(error.to_string().contains("certificate"), "{error}");
}

#[test]
fn bad_pem_is_refused_with_what_is_wrong() {
    let error = TlsAcceptor::from_pem(b"not pem", KEY).expect_err("no certificate");
    assert!(error.to_string().contains("certificate chain"), "{error}");
    let error = TlsAcceptor::from_pem(CERT, b"").expect_err("no key");
    assert!(error.to_string().contains("private key"), "{error}");
    let error = TlsAcceptor::from_pem(CA, KEY).expect_err("a key of another certificate");
    assert!(error.to_string().contains("certificate and key"), "{error}");
}

#[test]
fn engine_io_and_socket_io_clients_over_https_and_wss() {
    let sim = Sim::new();
    let server = eio::server(&sim, eio::Config::default()).expect("server");
    let listener = sim.listen("127.0.0.1:4443").expect("listen");
    let (rt, serving) = (sim.clone(), server.clone());
    sim.spawn(async move {
        let _ = eio::serve_accepting(&rt, serving, listener, acceptor(), |_, _| async {}).await;
    });
    let echo = server.clone();
    sim.spawn(async move {
        loop {
            if let eio::Event::Message { sid, data } = echo.next_event().await {
                let _ = echo.send(&sid, data);
            }
        }
    });
    let connector = Connector::default().tls(connector());
    sim.block_on(async {
        // Polling over https://, then the upgrade to wss://.
        let mut client = eio::connect_with(
            &sim,
            "https://127.0.0.1:4443",
            eio::ClientConfig::default(),
            connector.clone(),
        )
        .expect("url");
        assert!(matches!(
            client.recv().await,
            Some(eio::ClientEvent::Open(_))
        ));
        assert!(matches!(
            client.recv().await,
            Some(eio::ClientEvent::Upgraded)
        ));
        client.send(eio::Data::from("over tls")).expect("open");
        assert_eq!(
            client.recv().await,
            Some(eio::ClientEvent::Message(eio::Data::from("over tls")))
        );
        client.close();
        while client.recv().await.is_some() {}
        // Without the test CA: the connection fails, the client closes.
        let mut untrusting = eio::connect_with(
            &sim,
            "https://127.0.0.1:4443",
            eio::ClientConfig::default(),
            Connector::default(),
        )
        .expect("url");
        assert!(matches!(
            untrusting.recv().await,
            Some(eio::ClientEvent::Closed(_))
        ));
    });

    // Socket.IO, its server behind TLS too.
    let io = sio::server(&sim, sio::Config::default()).expect("server");
    io.of("/").on_connection(|socket| async move {
        // The handshake knows it came over TLS (`socket.handshake.secure`).
        let secure = socket.handshake().secure;
        socket.on(
            "secure",
            move |_socket, msg| async move { msg.ack(&secure) },
        );
        socket.on(
            "hi",
            |_socket, msg| async move { msg.ack(&"hello over tls") },
        );
    });
    let listener = sim.listen("127.0.0.1:4444").expect("listen");
    let rt = sim.clone();
    sim.spawn(async move {
        let _ = sio::serve_accepting(&rt, io, listener, acceptor()).await;
    });
    let socket = sio::io(
        &sim,
        "https://127.0.0.1:4444",
        sio::IoOptions::default().connector(connector),
    )
    .expect("url");
    let (answer, secure) = sim.block_on(async {
        socket.wait_connected().await.expect("connected");
        let timed = socket.timeout(Duration::from_secs(5));
        let hi = timed.emit_with_ack("hi", &1).await.expect("ack");
        (hi, timed.emit_with_ack("secure", &1).await.expect("ack"))
    });
    assert_eq!(
        answer.values().to_vec(),
        vec![serde_json::json!("hello over tls")]
    );
    assert_eq!(secure.values().to_vec(), vec![serde_json::json!(true)]);
}
