//! A socket as the reference's `fetchSockets` describes it to other servers.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::date::Civil;
use crate::http::query_pairs;
use crate::sio::{ConnectInfo, Sid};

/// `{id, handshake, rooms, data}`, the handshake in the shape of Node's
/// `socket.handshake` (`headers` lowercased, `time`, `address`, `xdomain`, `secure`,
/// `issued`, `url`, `query`, `auth`); `issued` is when the socket connected
/// (milliseconds since the Unix epoch).
pub fn socket_details(
    sid: &Sid,
    info: &ConnectInfo,
    rooms: &[String],
    data: Value,
    issued: u64,
) -> Value {
    let h = &info.handshake;
    let mut headers = Map::new();
    for (name, value) in h.headers.iter() {
        headers.insert(
            name.to_ascii_lowercase(),
            Value::String(String::from_utf8_lossy(value).into_owned()),
        );
    }
    let query_string = h.target.split_once('?').map_or("", |(_, q)| q);
    let query: Map<String, Value> = query_pairs(query_string)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    let address = h
        .peer_addr
        .map(|a| match a.ip() {
            IpAddr::V4(v4) => format!("::ffff:{v4}"),
            IpAddr::V6(v6) => v6.to_string(),
        })
        .unwrap_or_default();
    let time = Civil::from_millis(i64::try_from(issued).unwrap_or(i64::MAX)).js_string();
    json!({
        "id": sid.as_str(),
        "handshake": {
            "headers": headers,
            "time": time,
            "address": address,
            "xdomain": h.headers.get("origin").is_some(),
            "secure": h.secure,
            "issued": issued,
            "url": h.target,
            "query": query,
            "auth": info.auth,
        },
        "rooms": rooms,
        "data": data,
    })
}
