//! gRPC probes: `grpc.health.v1.Health/Check` over cleartext HTTP/2, without a full
//! gRPC stack; the two messages are prost structs written after grpc/health/v1/health.proto.

use bytes::Bytes;
use prost::Message;
use std::future::Future;
use tokio::net::TcpStream;

/// `message HealthCheckRequest { string service = 1; }`
#[derive(Clone, PartialEq, Message)]
pub(super) struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `message HealthCheckResponse { ServingStatus status = 1; }`
#[derive(Clone, PartialEq, Message)]
pub(super) struct HealthCheckResponse {
    #[prost(enumeration = "ServingStatus", tag = "1")]
    pub status: i32,
}

/// `HealthCheckResponse.ServingStatus`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(super) enum ServingStatus {
    Unknown = 0,
    Serving = 1,
    NotServing = 2,
    ServiceUnknown = 3,
}

/// Calls `grpc.health.v1.Health/Check` for `service` on `port` and returns whether the
/// answer is SERVING; the error says why there was no well-formed OK answer.
pub(super) async fn is_serving<C, F>(
    connect: C,
    port: u16,
    service: &str,
    user_agent: &str,
) -> Result<bool, String>
where
    C: FnOnce(u16) -> F,
    F: Future<Output = std::io::Result<TcpStream>>,
{
    let stream = connect(port).await.map_err(|e| e.to_string())?;
    let (client, connection) = h2::client::handshake(stream)
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let result = async {
        let mut client = client.ready().await.map_err(|e| e.to_string())?;
        let request = http::Request::builder()
            .method("POST")
            .uri(format!(
                "http://127.0.0.1:{port}/grpc.health.v1.Health/Check"
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("user-agent", user_agent)
            .body(())
            .map_err(|e| e.to_string())?;
        let (response, mut body) = client
            .send_request(request, false)
            .map_err(|e| e.to_string())?;
        let message = HealthCheckRequest {
            service: service.to_owned(),
        };
        body.send_data(grpc_frame(&message.encode_to_vec()), true)
            .map_err(|e| e.to_string())?;
        let response = response.await.map_err(|e| e.to_string())?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("HTTP status {}", response.status()));
        }
        let trailers_only = response.headers().get("grpc-status").cloned();
        let mut data = response.into_body();
        let mut message = Vec::new();
        while let Some(chunk) = data.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = data.flow_control().release_capacity(chunk.len());
            message.extend_from_slice(&chunk);
        }
        let trailers = data.trailers().await.map_err(|e| e.to_string())?;
        let status = trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status").cloned())
            .or(trailers_only);
        if status.as_ref().and_then(|s| s.to_str().ok()) != Some("0") {
            return Err(format!("grpc-status {status:?}"));
        }
        let response = health_check_response(&message)
            .ok_or_else(|| "an unreadable HealthCheckResponse".to_owned())?;
        Ok(response.status == ServingStatus::Serving as i32)
    }
    .await;
    driver.abort();
    result
}

/// A gRPC length-prefixed message (uncompressed).
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(message.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    Bytes::from(frame)
}

/// The first message of a response body; an absent status reads as UNKNOWN.
fn health_check_response(frame: &[u8]) -> Option<HealthCheckResponse> {
    let (header, message) = (frame.get(..5)?, frame.get(5..)?);
    if header[0] != 0 {
        // A compressed message: the request offered no compression.
        return None;
    }
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    HealthCheckResponse::decode(message.get(..length)?).ok()
}

#[cfg(test)]
#[path = "grpc_tests.rs"]
mod tests;
