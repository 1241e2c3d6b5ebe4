//! gRPC probes: `grpc.health.v1.Health/Check` over cleartext HTTP/2, without a full
//! gRPC stack; the two messages are prost structs written after grpc/health/v1/health.proto.

use crate::errors::ProbeError;
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
) -> Result<bool, ProbeError>
where
    C: FnOnce(u16) -> F,
    F: Future<Output = std::io::Result<TcpStream>>,
{
    let h2 = |action| move |source| ProbeError::H2 { action, source };
    let stream = connect(port)
        .await
        .map_err(|e| ProbeError::io(format!("dial port {port}"), e))?;
    let (client, connection) = h2::client::handshake(stream)
        .await
        .map_err(h2("speak HTTP/2"))?;
    let driver = tokio::spawn(connection);
    let result = async {
        let mut client = client.ready().await.map_err(h2("open a stream"))?;
        let request = http::Request::builder()
            .method("POST")
            .uri(format!(
                "http://127.0.0.1:{port}/grpc.health.v1.Health/Check"
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("user-agent", user_agent)
            .body(())
            .map_err(|source| ProbeError::InvalidRequest {
                action: "build the health check".to_owned(),
                source,
            })?;
        let (response, mut body) = client
            .send_request(request, false)
            .map_err(h2("send the health check"))?;
        let message = HealthCheckRequest {
            service: service.to_owned(),
        };
        body.send_data(grpc_frame(&message.encode_to_vec()), true)
            .map_err(h2("send the health check"))?;
        let response = response.await.map_err(h2("await the answer"))?;
        if response.status() != http::StatusCode::OK {
            return Err(ProbeError::GrpcHttpStatus(response.status()));
        }
        let trailers_only = response.headers().get("grpc-status").cloned();
        let mut data = response.into_body();
        let mut message = Vec::new();
        while let Some(chunk) = data.data().await {
            let chunk = chunk.map_err(h2("read the answer"))?;
            let _ = data.flow_control().release_capacity(chunk.len());
            message.extend_from_slice(&chunk);
        }
        let trailers = data.trailers().await.map_err(h2("read the trailers"))?;
        let status = trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status").cloned())
            .or(trailers_only);
        let status = status.map(|s| String::from_utf8_lossy(s.as_bytes()).into_owned());
        if status.as_deref() != Some("0") {
            return Err(ProbeError::GrpcStatus(status));
        }
        let response = health_check_response(&message)?;
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
fn health_check_response(frame: &[u8]) -> Result<HealthCheckResponse, ProbeError> {
    let (Some(header), Some(message)) = (frame.get(..5), frame.get(5..)) else {
        return Err(ProbeError::HealthCheckFrame("no complete message"));
    };
    if header[0] != 0 {
        // The request offered no compression.
        return Err(ProbeError::HealthCheckFrame("a compressed message"));
    }
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let message = message.get(..length).ok_or(ProbeError::HealthCheckFrame(
        "a message shorter than announced",
    ))?;
    HealthCheckResponse::decode(message).map_err(ProbeError::HealthCheckMessage)
}

#[cfg(test)]
#[path = "grpc_tests.rs"]
mod tests;
