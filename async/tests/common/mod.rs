//! Helpers shared by the in-memory test suites.

use bytes::Bytes;
use wirestate_async::mem::MemStream;
use wirestate_engine::http;

/// Reads one HTTP response, decoded by the core's HTTP client.
pub(crate) async fn read_response(raw: &mut MemStream) -> (u16, String) {
    let mut conn = http::ClientConn::new("GET", "/", "h", &[], Bytes::new(), 8192, 1 << 20)
        .expect("a valid request");
    while conn.poll_transmit().is_some() {} // the test writes its requests itself
    loop {
        if let Some(response) = conn.poll_response() {
            let response = response.expect("a valid response");
            return (
                response.status,
                String::from_utf8_lossy(&response.body).into(),
            );
        }
        let more = raw.read_some().await.expect("read");
        if more.is_empty() {
            conn.handle_eof();
        } else {
            conn.handle_input(&more);
        }
    }
}
