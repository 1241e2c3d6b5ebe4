//! gRPC probes: `grpc.health.v1.Health/Check` over cleartext HTTP/2, without a full
//! gRPC stack; the two messages are prost structs written after grpc/health/v1/health.proto.

use crate::errors::ProbeError;
use bytes::Bytes;
use prost::Message;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// grpc-go's default connection back-off (`backoff.DefaultConfig`): the first retry after
/// 1s, each later one 1.6 times longer, at most 120s. grpc-go also jitters each wait by
/// ±20%; here the waits are exact, so the same scenario retries at the same moments.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MULTIPLIER: f64 = 1.6;
const RETRY_MAX: Duration = Duration::from_secs(120);

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
///
/// The kubelet dials with `grpc.WithBlock()` inside the probe's timeout: until a server
/// has sent its HTTP/2 preface, a refused connection or a peer that does not speak
/// HTTP/2 is retried with gRPC's back-off (`time_scale` wall seconds per second), and the
/// probe fails only when the caller's deadline cuts the wait short. Once connected, the
/// first answer decides.
pub(super) async fn is_serving<C, F>(
    connect: C,
    port: u16,
    service: &str,
    user_agent: &str,
    time_scale: f64,
) -> Result<bool, ProbeError>
where
    C: Fn(u16) -> F,
    F: Future<Output = std::io::Result<TcpStream>>,
{
    let mut wait = RETRY_FIRST;
    loop {
        match check_once(&connect, port, service, user_agent).await {
            Err(Attempt::NotConnected) => {
                tokio::time::sleep(wait.mul_f64(time_scale)).await;
                wait = wait.mul_f64(RETRY_MULTIPLIER).min(RETRY_MAX);
            }
            Err(Attempt::Failed(error)) => return Err(error),
            Ok(serving) => return Ok(serving),
        }
    }
}

/// Why one connection gave no answer.
#[derive(Debug)]
enum Attempt {
    /// No server preface came: gRPC's client is still connecting, and retries (the
    /// cause is dropped, as the kubelet reports only the deadline).
    NotConnected,
    /// The server was reached and the call failed.
    Failed(ProbeError),
}

/// One connection and one health check on it.
async fn check_once<C, F>(
    connect: &C,
    port: u16,
    service: &str,
    user_agent: &str,
) -> Result<bool, Attempt>
where
    C: Fn(u16) -> F,
    F: Future<Output = std::io::Result<TcpStream>>,
{
    let stream = connect(port).await.map_err(|_| Attempt::NotConnected)?;
    let preface = Arc::new(AtomicBool::new(false));
    let stream = PrefaceWatch {
        inner: stream,
        head: Vec::with_capacity(FRAME_HEADER),
        preface: preface.clone(),
    };
    let classify = |error: ProbeError| {
        if preface.load(Ordering::Acquire) {
            Attempt::Failed(error)
        } else {
            Attempt::NotConnected
        }
    };
    let h2 = |action| move |source| ProbeError::H2 { action, source };
    let (client, connection) = h2::client::handshake(stream)
        .await
        .map_err(h2("speak HTTP/2"))
        .map_err(classify)?;
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
    result.map_err(classify)
}

/// The length of an HTTP/2 frame header.
const FRAME_HEADER: usize = 9;
/// The HTTP/2 SETTINGS frame type.
const SETTINGS: u8 = 0x4;
/// The ACK flag of a SETTINGS frame.
const SETTINGS_ACK: u8 = 0x1;

/// A connection that notes whether the server's first frame is a SETTINGS frame (its
/// HTTP/2 preface): grpc-go's transport counts as connected only from then on ("Block
/// until the server preface is received successfully", `newHTTP2Client`).
struct PrefaceWatch {
    inner: TcpStream,
    /// The server's first bytes, up to one frame header.
    head: Vec<u8>,
    preface: Arc<AtomicBool>,
}

impl AsyncRead for PrefaceWatch {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let wanted = FRAME_HEADER - self.head.len();
        if wanted > 0 {
            let new = &buf.filled()[before..];
            let take = new.len().min(wanted);
            let bytes = new[..take].to_vec();
            self.head.extend_from_slice(&bytes);
            if let [_, _, _, kind, flags, id @ ..] = self.head.as_slice() {
                let settings =
                    *kind == SETTINGS && flags & SETTINGS_ACK == 0 && id.iter().all(|b| *b == 0);
                self.preface.store(settings, Ordering::Release);
            }
        }
        polled
    }
}

impl AsyncWrite for PrefaceWatch {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
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
