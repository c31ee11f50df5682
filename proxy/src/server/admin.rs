//! The admin listener: `GET /metrics` (Prometheus text) and `GET /healthz`.
//!
//! It is a Pingora listening service in the same server as the proxy, so it starts, is handed
//! over in a graceful upgrade, and stops together with it. It never sees virtual keys or bodies.

use crate::telemetry;
use async_trait::async_trait;
use http::{header, Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::services::listening::Service;

/// The admin HTTP app.
#[derive(Debug, Clone, Copy, Default)]
pub struct Admin;

/// A Pingora service serving [`Admin`] on `addr`.
pub fn service(addr: &str) -> Service<Admin> {
    let mut service = Service::new("sluice admin".to_string(), Admin);
    service.add_tcp(addr);
    service
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let (status, content_type, body) = answer(&req.method, req.uri.path());
        let built = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, body.len())
            .body(body);
        // The parts above are all statically valid; the fallback only satisfies the types.
        built.unwrap_or_else(|_| Response::new(Vec::new()))
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
/// The Prometheus text exposition format.
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Status, content type and body for a request line.
fn answer(method: &Method, path: &str) -> (StatusCode, &'static str, Vec<u8>) {
    match (method == Method::GET, path) {
        (true, "/metrics") => match telemetry::render() {
            Some(text) => (StatusCode::OK, PROMETHEUS, text.into_bytes()),
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                b"no metrics recorder\n".to_vec(),
            ),
        },
        (true, "/healthz") => (StatusCode::OK, TEXT, b"ok\n".to_vec()),
        (false, "/metrics" | "/healthz") => (
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            b"method not allowed\n".to_vec(),
        ),
        _ => (StatusCode::NOT_FOUND, TEXT, b"not found\n".to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(answer(&Method::GET, "/healthz").0, StatusCode::OK);
        assert_eq!(answer(&Method::GET, "/nope").0, StatusCode::NOT_FOUND);
        assert_eq!(
            answer(&Method::POST, "/metrics").0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        telemetry::install();
        telemetry::record_start(1);
        let (status, _, body) = answer(&Method::GET, "/metrics");
        assert_eq!(status, StatusCode::OK);
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("sluice_build_info"), "{text}");
        assert!(
            text.contains("sluice_config_reloads_total{result=\"error\"} 0"),
            "{text}"
        );
    }
}
