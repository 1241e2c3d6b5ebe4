//! The gRPC prober against a small local HTTP/2 health server (no root).

use super::*;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// What the test server answers: a serving status, and the grpc-status trailer.
#[derive(Clone, Copy)]
struct Answer {
    status: ServingStatus,
    grpc_status: &'static str,
}

/// A health server on 127.0.0.1 that records the services and user agents it is asked
/// with.
async fn health_server(answer: Answer) -> (u16, Arc<Mutex<Vec<(String, String)>>>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind a test server");
    let port = listener.local_addr().expect("its address").port();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let recorded = asked.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let Ok(mut connection) = h2::server::handshake(stream).await else {
                continue;
            };
            while let Some(Ok((request, mut respond))) = connection.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let agent = request
                        .headers()
                        .get("user-agent")
                        .and_then(|a| a.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let mut body = request.into_body();
                    let mut frame = Vec::new();
                    while let Some(Ok(chunk)) = body.data().await {
                        let _ = body.flow_control().release_capacity(chunk.len());
                        frame.extend_from_slice(&chunk);
                    }
                    let service = frame
                        .get(5..)
                        .and_then(|m| HealthCheckRequest::decode(m).ok())
                        .map(|r| r.service)
                        .unwrap_or_default();
                    recorded.lock().expect("asked").push((service, agent));
                    let head = http::Response::builder()
                        .status(200)
                        .header("content-type", "application/grpc")
                        .body(())
                        .expect("a response head");
                    let Ok(mut stream) = respond.send_response(head, false) else {
                        return;
                    };
                    let message = HealthCheckResponse {
                        status: answer.status as i32,
                    };
                    let _ = stream.send_data(grpc_frame(&message.encode_to_vec()), false);
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert(
                        "grpc-status",
                        http::HeaderValue::from_static(answer.grpc_status),
                    );
                    let _ = stream.send_trailers(trailers);
                });
            }
        }
    });
    (port, asked)
}

async fn ask(port: u16, service: &str) -> Result<bool, ProbeError> {
    let connect = |port: u16| TcpStream::connect((Ipv4Addr::LOCALHOST, port));
    is_serving(connect, port, service, "kube-probe/1.35", 1.0).await
}

/// A port nothing listens on (bound, then closed).
async fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind a test port");
    listener.local_addr().expect("its address").port()
}

/// Back-off waits 20 times shorter than grpc-go's: retries at 50ms, 130ms, 258ms, ...
const FAST_RETRIES: f64 = 0.05;

#[tokio::test]
async fn a_refused_dial_is_retried_until_the_deadline() {
    let port = closed_port().await;
    let connect = |port: u16| TcpStream::connect((Ipv4Addr::LOCALHOST, port));
    let attempt = is_serving(connect, port, "", "kube-probe/1.35", FAST_RETRIES);
    // No answer, not even a failure, before the caller's deadline.
    let outcome = tokio::time::timeout(Duration::from_millis(400), attempt).await;
    assert!(outcome.is_err(), "{outcome:?}");
}

#[tokio::test]
async fn a_server_that_comes_up_during_the_dial_is_reached() {
    let port = closed_port().await;
    let connect = |port: u16| TcpStream::connect((Ipv4Addr::LOCALHOST, port));
    let attempt = is_serving(connect, port, "", "kube-probe/1.35", FAST_RETRIES);
    let server = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .expect("bind the port again");
        let (stream, _) = listener.accept().await.expect("the retried dial");
        let mut connection = h2::server::handshake(stream).await.expect("HTTP/2");
        let (_, mut respond) = connection
            .accept()
            .await
            .expect("a request")
            .expect("a well-formed request");
        let head = http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .body(())
            .expect("a response head");
        let mut stream = respond.send_response(head, false).expect("send the head");
        let message = HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        };
        let _ = stream.send_data(grpc_frame(&message.encode_to_vec()), false);
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let _ = stream.send_trailers(trailers);
        // Keep the connection going until the client has read the answer.
        let _ = tokio::time::timeout(Duration::from_secs(2), connection.accept()).await;
    };
    let (outcome, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(2), attempt),
        server
    );
    assert!(matches!(outcome, Ok(Ok(true))), "{outcome:?}");
}

#[tokio::test]
async fn a_port_that_does_not_speak_http2_is_retried_like_a_refused_one() {
    // An HTTP/1 server: it answers the client preface with a 400 and closes.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind a test server");
    let port = listener.local_addr().expect("its address").port();
    let connections = Arc::new(Mutex::new(0u32));
    let counted = connections.clone();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut stream, _)) = listener.accept().await {
            *counted.lock().expect("count") += 1;
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                .await;
            let _ = stream.shutdown().await;
        }
    });
    let connect = |port: u16| TcpStream::connect((Ipv4Addr::LOCALHOST, port));
    let attempt = is_serving(connect, port, "", "kube-probe/1.35", FAST_RETRIES);
    let outcome = tokio::time::timeout(Duration::from_millis(400), attempt).await;
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(*connections.lock().expect("count") >= 2);
}

#[tokio::test]
async fn a_serving_service_passes_and_is_asked_by_name() {
    let (port, asked) = health_server(Answer {
        status: ServingStatus::Serving,
        grpc_status: "0",
    })
    .await;
    assert!(matches!(ask(port, "payments").await, Ok(true)));
    assert_eq!(
        asked.lock().expect("asked").clone(),
        [("payments".to_owned(), "kube-probe/1.35".to_owned())]
    );
}

#[tokio::test]
async fn any_other_serving_status_fails() {
    for status in [
        ServingStatus::Unknown,
        ServingStatus::NotServing,
        ServingStatus::ServiceUnknown,
    ] {
        let (port, _) = health_server(Answer {
            status,
            grpc_status: "0",
        })
        .await;
        let answer = ask(port, "").await;
        assert!(matches!(answer, Ok(false)), "{status:?}: {answer:?}");
    }
}

#[tokio::test]
async fn a_grpc_error_status_is_no_answer() {
    // UNIMPLEMENTED: a server without the health service.
    let (port, _) = health_server(Answer {
        status: ServingStatus::Serving,
        grpc_status: "12",
    })
    .await;
    let answer = ask(port, "").await;
    assert!(
        matches!(&answer, Err(ProbeError::GrpcStatus(Some(s))) if s == "12"),
        "{answer:?}"
    );
}

#[test]
fn health_messages_are_protobuf() {
    let request = |service: &str| {
        HealthCheckRequest {
            service: service.to_owned(),
        }
        .encode_to_vec()
    };
    assert_eq!(request(""), Vec::<u8>::new());
    assert_eq!(request("h"), vec![0x0A, 1, b'h']);
    let frame = grpc_frame(&[0x08, 2]);
    assert_eq!(&frame[..], &[0, 0, 0, 0, 2, 0x08, 2]);
    let status = |frame: &[u8]| health_check_response(frame).ok().map(|r| r.status);
    assert_eq!(status(&frame), Some(ServingStatus::NotServing as i32));
    // An empty message is UNKNOWN; an unknown field is skipped.
    assert_eq!(status(&grpc_frame(&[])), Some(0));
    assert_eq!(status(&grpc_frame(&[0x12, 1, b'x', 0x08, 1])), Some(1));
    assert_eq!(status(&[0, 0, 0]), None);
    // A compressed message cannot be read.
    assert_eq!(status(&[1, 0, 0, 0, 2, 0x08, 1]), None);
}
