//! The gRPC health server (`grpc.health.v1.Health/Check`) that Kubernetes gRPC probes ask.
//!
//! It speaks cleartext HTTP/2 with prior knowledge (h2c), as gRPC clients without TLS do,
//! on a tokio current-thread runtime of its own thread; the rest of the agent stays on
//! plain threads. The two protobuf messages are `prost` derives (`HealthCheckRequest`,
//! `HealthCheckResponse`), written out here rather than generated, so no protoc is needed.
//!
//! There is no gRPC stack on purpose: every Check must be logged, a request that does not
//! decode too (with a null endpoint), and its answer is timed from the moment it arrived;
//! tonic would refuse an undecodable request before our code saw it, and would bring hyper
//! and tower into a binary that is copied into every container. What is left by hand is
//! gRPC's own layer over HTTP/2: the path, the 5-byte message framing and the status in
//! the trailers.
//!
//! The empty service is always SERVING; an endpoint's name gives that endpoint's answer at
//! the moment the request arrives (ok: SERVING, fail: NOT_SERVING, slow: SERVING after the
//! wait); any other service is NOT_FOUND. Other methods are UNIMPLEMENTED, a request that
//! does not decode is INVALID_ARGUMENT, and one larger than `MAX_REQUEST` bytes is
//! RESOURCE_EXHAUSTED.

use crate::health::{self, Clock};
use crate::log;
use bytes::{BufMut, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::RecvStream;
use http::header::{HeaderName, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderValue, Request, Response};
use podcheck_wire::{Answer, Answered, Event, Health, Probe};
use prost::Message;
use std::sync::Arc;
use std::time::Duration;

/// The one method served.
pub const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";
/// The most bytes of a request body (gRPC framing included) the server reads.
const MAX_REQUEST: usize = 64 * 1024;
/// How long a connection may take to complete the HTTP/2 handshake, in wall time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// gRPC status codes.
const OK: u32 = 0;
const INVALID_ARGUMENT: u32 = 3;
const NOT_FOUND: u32 = 5;
const RESOURCE_EXHAUSTED: u32 = 8;
const UNIMPLEMENTED: u32 = 12;

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(enumeration = "ServingStatus", tag = "1")]
    status: i32,
}

/// `grpc.health.v1.HealthCheckResponse.ServingStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
enum ServingStatus {
    Unknown = 0,
    Serving = 1,
    NotServing = 2,
    /// Only for Watch, which is not served.
    ServiceUnknown = 3,
}

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// Serves gRPC health on 0.0.0.0:`port` from `listen_after_ms` on; never returns, and ends
/// the agent with code 125 when the port cannot be bound.
pub fn serve(port: u16, health: Arc<Health>, clock: Clock) {
    health::sleep_until(clock.deadline(health.listen_after_ms));
    // Only the IO and time drivers: signals stay with the agent's own SIGTERM thread.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => health::die(&format!("cannot start the gRPC runtime: {err}")),
    };
    let listener = health::bind(port);
    if let Err(err) = listener.set_nonblocking(true) {
        health::die_unbindable(port, err);
    }
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(err) => health::die_unbindable(port, err),
        };
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, Arc::clone(&health), clock));
                }
                // Out of descriptors or an aborted handshake: let the moment pass.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    });
}

/// Serves one HTTP/2 connection, each request in a task of its own, until it closes or
/// breaks.
async fn connection(stream: tokio::net::TcpStream, health: Arc<Health>, clock: Clock) {
    let _ = stream.set_nodelay(true);
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, h2::server::handshake(stream));
    let mut connection = match handshake.await {
        Ok(Ok(connection)) => connection,
        // Not HTTP/2 with prior knowledge, or too slow about it.
        _ => return,
    };
    while let Some(accepted) = connection.accept().await {
        match accepted {
            Ok((request, respond)) => {
                tokio::spawn(call(request, respond, Arc::clone(&health), clock));
            }
            Err(_) => return, // a broken connection ends only itself
        }
    }
}

/// Answers one request. Failures to send mean the client went away, which changes nothing.
async fn call(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    health: Arc<Health>,
    clock: Clock,
) {
    let arrived = clock.now_ms();
    let path = request.uri().path().to_owned();
    if path != CHECK_PATH {
        send_trailers_only(
            &mut respond,
            UNIMPLEMENTED,
            &format!("unknown method {path}"),
        );
        return;
    }
    let user_agent = request
        .headers()
        .get(USER_AGENT)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default();
    let body = match read_body(request.into_body()).await {
        Ok(body) => body,
        Err(BodyError::Broken) => return,
        Err(BodyError::TooLarge) => {
            log_check(None, Answered::Unknown, &user_agent);
            send_trailers_only(
                &mut respond,
                RESOURCE_EXHAUSTED,
                &format!("request larger than {MAX_REQUEST} bytes"),
            );
            return;
        }
    };
    let service = match unframe(&body).and_then(decode_check_request) {
        Ok(request) => request.service,
        Err(reason) => {
            log_check(None, Answered::Unknown, &user_agent);
            send_trailers_only(&mut respond, INVALID_ARGUMENT, &reason);
            return;
        }
    };
    let answer = if service.is_empty() {
        Some(Answer::Ok)
    } else {
        health
            .endpoints
            .get(&service)
            .map(|endpoint| health::answer_at(endpoint, arrived))
    };
    log_check(
        Some(&service),
        answer.map_or(Answered::Unknown, Answer::answered),
        &user_agent,
    );
    let status = match answer {
        None => {
            let _ = send_reply(&mut respond, None, NOT_FOUND, "unknown service");
            return;
        }
        Some(Answer::Fail) => ServingStatus::NotServing,
        Some(Answer::Ok) => ServingStatus::Serving,
        Some(Answer::SlowMs(ms)) => {
            tokio::select! {
                () = tokio::time::sleep(clock.wall(ms)) => {}
                // The client gave up (a probe timeout): nobody is left to answer.
                _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => return,
            }
            ServingStatus::Serving
        }
    };
    let response = HealthCheckResponse {
        status: status.into(),
    };
    let message = frame(&response.encode_to_vec());
    let _ = send_reply(&mut respond, Some(message), OK, "");
}

fn log_check(service: Option<&str>, answer: Answered, user_agent: &str) {
    log(Event::Probe(Probe::Grpc(podcheck_wire::Request {
        endpoint: service.map(str::to_owned),
        answer,
        user_agent: user_agent.to_owned(),
    })));
}

enum BodyError {
    /// The stream was reset or the connection broke: there is no one to answer.
    Broken,
    TooLarge,
}

/// Reads the whole request body, however many DATA frames it comes in.
async fn read_body(mut body: RecvStream) -> Result<Bytes, BodyError> {
    let mut whole = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|_| BodyError::Broken)?;
        // Let the client send on: the flow-control window is only refilled on release.
        let _ = body.flow_control().release_capacity(chunk.len());
        if whole.len() + chunk.len() > MAX_REQUEST {
            return Err(BodyError::TooLarge);
        }
        whole.extend_from_slice(&chunk);
    }
    Ok(whole.freeze())
}

fn grpc_response() -> Response<()> {
    let mut response = Response::new(());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

/// `grpc-status` and, unless `message` is empty, `grpc-message`.
fn status_headers(headers: &mut HeaderMap, code: u32, message: &str) {
    headers.insert(GRPC_STATUS, HeaderValue::from(code));
    if !message.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&percent_encode(message)) {
            headers.insert(GRPC_MESSAGE, value);
        }
    }
}

/// An error without a message: the status goes in the response headers, which end the
/// stream (a gRPC "trailers-only" response).
fn send_trailers_only(respond: &mut SendResponse<Bytes>, code: u32, message: &str) {
    let mut response = grpc_response();
    status_headers(response.headers_mut(), code, message);
    let _ = respond.send_response(response, true);
}

/// Headers, then `message` if there is one, then trailers with the status.
fn send_reply(
    respond: &mut SendResponse<Bytes>,
    message: Option<Bytes>,
    code: u32,
    status_message: &str,
) -> Result<(), h2::Error> {
    let mut stream = respond.send_response(grpc_response(), false)?;
    if let Some(message) = message {
        stream.send_data(message, false)?;
    }
    let mut trailers = HeaderMap::new();
    status_headers(&mut trailers, code, status_message);
    stream.send_trailers(trailers)
}

/// gRPC's encoding of `grpc-message`: bytes outside printable ASCII, and `%`, as `%XX`.
fn percent_encode(message: &str) -> String {
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// One uncompressed gRPC length-prefixed message.
fn frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    // Messages here are a few bytes; MAX_REQUEST keeps any length far below u32::MAX.
    framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    framed.put_slice(message);
    framed.freeze()
}

/// The single message of a unary request body.
fn unframe(body: &[u8]) -> Result<&[u8], String> {
    let Some((&compressed, rest)) = body.split_first() else {
        return Err("the request has no message".to_owned());
    };
    let (Some(length), Some(message)) = (rest.get(..4), rest.get(4..)) else {
        return Err("the request's message header is cut short".to_owned());
    };
    if compressed != 0 {
        return Err("compressed messages are not supported".to_owned());
    }
    let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
    match message.len() {
        n if n < length => Err(format!(
            "the request's message is cut short at {n} of {length} bytes"
        )),
        n if n > length => Err("the request has more than one message".to_owned()),
        _ => Ok(message),
    }
}

/// Decodes a `HealthCheckRequest`; as in protobuf, unknown fields are skipped and an
/// absent `service` is the empty one.
fn decode_check_request(message: &[u8]) -> Result<HealthCheckRequest, String> {
    HealthCheckRequest::decode(message).map_err(|err| format!("the request does not decode: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(message: &[u8]) -> Vec<u8> {
        frame(message).to_vec()
    }

    fn decode(body: &[u8]) -> Result<String, String> {
        unframe(body)
            .and_then(decode_check_request)
            .map(|request| request.service)
    }

    #[test]
    fn a_request_decodes_to_its_service() {
        assert_eq!(decode(&framed(b"\x0a\x04live")), Ok("live".to_owned()));
        assert_eq!(decode(&framed(b"")), Ok(String::new()));
        let long = "s".repeat(200);
        let mut message = vec![0x0a, 0xc8, 0x01]; // a length of 200 takes two bytes
        message.extend_from_slice(long.as_bytes());
        assert_eq!(decode(&framed(&message)), Ok(long));
        // The last of a repeated field wins.
        assert_eq!(decode(&framed(b"\x0a\x01a\x0a\x01b")), Ok("b".to_owned()));
    }

    #[test]
    fn unknown_fields_are_skipped_by_wire_type() {
        let message: &[u8] = &[
            0x10, 0x96, 0x01, // field 2, varint 150
            0x19, 1, 2, 3, 4, 5, 6, 7, 8, // field 3, fixed64
            0x25, 1, 2, 3, 4, // field 4, fixed32
            0x2a, 0x02, b'x', b'y', // field 5, length-delimited
            0x33, 0x38, 0x01, 0x34, // field 6, a group holding field 7 = 1
            0x0a, 0x02, b'o', b'k', // service
            0xf8, 0xff, 0xff, 0xff, 0x0f, 0x00, // field 2^29 - 1, varint 0
        ];
        assert_eq!(decode(&framed(message)), Ok("ok".to_owned()));
    }

    #[test]
    fn malformed_requests_are_refused() {
        for body in [
            vec![],
            vec![0, 0, 0],
            vec![1, 0, 0, 0, 0],
            vec![0, 0, 0, 0, 3, 0x0a, 0x05],
            framed(b"\x0a\x05ab"),
            [framed(b""), framed(b"")].concat(),
            framed(b"\x08\x01"),         // service as a varint
            framed(b"\x0a\x02\xff\xfe"), // not UTF-8
            framed(b"\x00\x01"),         // field 0
            framed(b"\x16"),             // wire type 6
            framed(b"\x14"),             // an end group outside a group
            framed(b"\x13\x08\x01"),     // a group that does not end
            framed(b"\x13\x1c"),         // a group ended as another
            framed(&[
                0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ]),
            framed(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), // a huge length
            framed(&[0x13; 200]),                          // groups nested too deeply
        ] {
            assert!(decode(&body).is_err(), "{body:02x?} decoded");
        }
    }

    #[test]
    fn a_response_is_the_framed_status() {
        let encode = |status: ServingStatus| {
            HealthCheckResponse {
                status: status.into(),
            }
            .encode_to_vec()
        };
        assert_eq!(
            framed(&encode(ServingStatus::Serving)),
            [0, 0, 0, 0, 2, 0x08, 0x01]
        );
        assert_eq!(encode(ServingStatus::NotServing), [0x08, 0x02]);
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(percent_encode("unknown service"), "unknown service");
        assert_eq!(percent_encode("100% é\n"), "100%25 %C3%A9%0A");
    }
}
