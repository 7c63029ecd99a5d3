//! The tower layer called directly, as hyper or axum would call it: requests in,
//! responses out, on the in-memory runtime (no sockets).

#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt};
use wirestate_async::mem::Sim;
use wirestate_async::sio::ConnectError;
use wirestate_async::tower::{extensions, EngineLayer, NotFound};
use wirestate_async::{eio, sio, Runtime};

type Response = http::Response<wirestate_async::tower::ResponseBody<Full<Bytes>>>;

/// The application's own service: `inner` for every request that reaches it.
fn app(
) -> tower::util::BoxCloneService<http::Request<Full<Bytes>>, http::Response<Full<Bytes>>, Infallible>
{
    tower::util::BoxCloneService::new(tower::service_fn(|_req| async {
        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"inner"))))
    }))
}

fn get(target: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(target)
        .body(Full::default())
        .expect("request")
}

fn post(target: &str, body: &'static str) -> http::Request<Full<Bytes>> {
    http::Request::post(target)
        .header("content-type", "text/plain;charset=UTF-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("request")
}

async fn call<S>(service: &mut S, request: http::Request<Full<Bytes>>) -> (u16, String)
where
    S: Service<http::Request<Full<Bytes>>, Response = Response, Error = Infallible>,
{
    let response = service
        .ready()
        .await
        .expect("ready")
        .call(request)
        .await
        .expect("infallible");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The sid in an Engine.IO open packet (`0{"sid":"…",…}`).
fn sid_of(open: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(&open[1..]).expect("open packet");
    json["sid"].as_str().expect("sid").to_owned()
}

#[test]
fn other_paths_reach_the_inner_service_and_engine_io_polls_through_the_layer() {
    let sim = Sim::new();
    let server = eio::server(&sim, eio::Config::default()).expect("server");
    let echo = server.clone();
    sim.spawn(async move {
        loop {
            if let eio::Event::Message { sid, data } = echo.next_event().await {
                let _ = echo.send(&sid, data);
            }
        }
    });
    let mut service = tower_layer::Layer::layer(&EngineLayer::new(&sim, server.clone()), app());
    sim.block_on(async {
        assert_eq!(
            call(&mut service, get("/health")).await,
            (200, "inner".into())
        );
        let (status, open) = call(&mut service, get("/engine.io/?EIO=4&transport=polling")).await;
        assert_eq!(status, 200);
        let sid = sid_of(&open);
        let target = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
        // A GET parks until the echo of the POST's message answers it.
        let answered = Arc::new(Mutex::new(None));
        let (mut poller, slot, poll_target) = (service.clone(), answered.clone(), target.clone());
        sim.spawn(async move {
            let answer = call(&mut poller, get(&poll_target)).await;
            *slot.lock().expect("slot") = Some(answer);
        });
        sim.sleep(Duration::from_millis(10)).await;
        assert_eq!(*answered.lock().expect("slot"), None, "the GET is parked");
        assert_eq!(
            call(&mut service, post(&target, "4hello")).await,
            (200, "ok".into())
        );
        sim.sleep(Duration::from_millis(10)).await;
        assert_eq!(
            *answered.lock().expect("slot"),
            Some((200, "4hello".into()))
        );
    });
    assert_eq!(server.session_count(), 1);
}

#[test]
fn a_dropped_poll_ends_its_session_and_bodies_over_the_limit_get_413() {
    let sim = Sim::new();
    let server = eio::server(&sim, eio::Config::default().max_payload(100)).expect("server");
    let mut service = tower_layer::Layer::layer(&EngineLayer::new(&sim, server.clone()), NotFound);
    sim.block_on(async {
        let (_, open) = call(&mut service, get("/engine.io/?EIO=4&transport=polling")).await;
        let target = format!("/engine.io/?EIO=4&transport=polling&sid={}", sid_of(&open));
        // Far over the limit: not even read.
        let huge = Box::leak(format!("4{}", "x".repeat(4000)).into_boxed_str());
        assert_eq!(call(&mut service, post(&target, huge)).await.0, 413);
        // Over it: the endpoint ends the session too.
        let big = Box::leak(format!("4{}", "x".repeat(200)).into_boxed_str());
        assert_eq!(call(&mut service, post(&target, big)).await.0, 413);
        assert_eq!(
            call(&mut service, get(&target)).await.0,
            400,
            "session gone"
        );
        let (_, open) = call(&mut service, get("/engine.io/?EIO=4&transport=polling")).await;
        let target = format!("/engine.io/?EIO=4&transport=polling&sid={}", sid_of(&open));
        let parked = call(&mut service, get(&target));
        // The client goes away: hyper drops the response future.
        assert!(sim
            .timeout(Duration::from_millis(50), parked)
            .await
            .is_none());
        assert_eq!(call(&mut service, get("/elsewhere")).await.0, 404);
    });
    assert_eq!(server.session_count(), 0, "both sessions ended");
}

#[test]
fn a_websocket_upgrade_without_hyper_upgrades_is_refused() {
    let sim = Sim::new();
    let server = eio::server(&sim, eio::Config::default()).expect("server");
    let mut service = tower_layer::Layer::layer(&EngineLayer::new(&sim, server.clone()), NotFound);
    let request = http::Request::get("/engine.io/?EIO=4&transport=websocket")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .body(Full::default())
        .expect("request");
    let (status, body) = sim.block_on(call(&mut service, request));
    assert_eq!(status, 400, "{body}");
    assert_eq!(server.session_count(), 0);
}

/// An application's authenticated user, put in the request by its middleware.
#[derive(Clone, Debug, PartialEq)]
struct User(&'static str);

#[test]
fn socket_io_middleware_sees_the_request_extensions_and_peer_address() {
    let sim = Sim::new();
    let io = sio::server(&sim, sio::Config::default()).expect("server");
    io.of("/").middleware(|req| async move {
        let user = extensions(req.handshake()).and_then(|e| e.get::<User>().cloned());
        match (user, req.handshake().peer_addr) {
            (Some(User(name)), Some(addr)) if addr.port() == 4242 => {
                req.set_data(serde_json::json!({ "user": name }));
                Ok(())
            }
            _ => Err(ConnectError::new("who are you?")),
        }
    });
    let mut service =
        tower_layer::Layer::layer(&EngineLayer::new(&sim, io.host().clone()), NotFound);
    let open = |user: Option<User>| {
        let mut request = get("/socket.io/?EIO=4&transport=polling");
        request
            .extensions_mut()
            .insert(std::net::SocketAddr::from(([127, 0, 0, 1], 4242)));
        if let Some(user) = user {
            request.extensions_mut().insert(user);
        }
        request
    };
    sim.block_on(async {
        for (user, expected) in [
            (Some(User("alice")), "40{\"sid\""),
            (None, "44{\"message\":\"who are you?\""),
        ] {
            let (_, handshake) = call(&mut service, open(user)).await;
            let target = format!(
                "/socket.io/?EIO=4&transport=polling&sid={}",
                sid_of(&handshake)
            );
            assert_eq!(
                call(&mut service, post(&target, "40")).await,
                (200, "ok".into())
            );
            let (status, answer) = call(&mut service, get(&target)).await;
            assert_eq!(status, 200);
            assert!(answer.starts_with(expected), "{answer}");
        }
    });
}
