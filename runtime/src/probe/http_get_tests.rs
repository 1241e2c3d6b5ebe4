//! The HTTP prober against small local servers (no network namespace, no root).

use super::*;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const USER_AGENT: &str = "kube-probe/1.35";
const TIMEOUT: Duration = Duration::from_secs(2);

/// What a test server does on a connection, in order.
#[derive(Clone, Debug)]
enum Step {
    Write(Vec<u8>),
    Sleep(Duration),
    /// Keep the connection open without a word more.
    Hold,
}

fn answer(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<Step> {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    vec![Step::Write(format!("{head}\r\n{body}").into_bytes())]
}

/// A server on 127.0.0.1 that records each request's head and answers with the steps
/// `reply` gives for its request line.
struct Server {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start(reply: impl Fn(&str) -> Vec<Step> + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind a test server");
        let port = listener.local_addr().expect("its address").port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let reply = Arc::new(reply);
        let recorded = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (reply, recorded) = (reply.clone(), recorded.clone());
                tokio::spawn(async move {
                    let head = read_head(&mut stream).await;
                    let request_line = head.lines().next().unwrap_or_default().to_owned();
                    recorded.lock().expect("heads").push(head);
                    for step in reply(&request_line) {
                        match step {
                            Step::Write(bytes) => {
                                if stream.write_all(&bytes).await.is_err() {
                                    return;
                                }
                            }
                            Step::Sleep(pause) => tokio::time::sleep(pause).await,
                            Step::Hold => std::future::pending::<()>().await,
                        }
                    }
                });
            }
        });
        Server { port, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("heads").clone()
    }
}

async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

async fn probe_port(
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Outcome {
    let get = HttpGet {
        port,
        path,
        headers,
        user_agent: USER_AGENT,
    };
    let connect = |port: u16| TcpStream::connect((Ipv4Addr::LOCALHOST, port));
    probe(connect, get, timeout).await
}

async fn probe_server(server: &Server, path: &str) -> Outcome {
    probe_port(server.port, path, &[], TIMEOUT).await
}

fn header_lines(head: &str) -> Vec<&str> {
    head.lines().skip(1).filter(|l| !l.is_empty()).collect()
}

#[tokio::test]
async fn a_200_is_a_success_and_the_request_is_the_kubelets() {
    let server = Server::start(|_| answer("200 OK", &[], "ok")).await;
    let outcome = probe_server(&server, "/healthz").await;
    assert!(matches!(outcome, Outcome::Success), "{outcome:?}");
    let heads = server.heads();
    assert_eq!(heads.len(), 1);
    assert!(
        heads[0].starts_with("GET /healthz HTTP/1.1\r\n"),
        "{heads:?}"
    );
    let mut lines = header_lines(&heads[0]);
    lines.sort_unstable();
    let host = format!("Host: 127.0.0.1:{}", server.port);
    assert_eq!(
        lines,
        [
            "Accept: */*",
            "Connection: close",
            host.as_str(),
            "User-Agent: kube-probe/1.35"
        ]
    );
}

#[tokio::test]
async fn status_codes_from_200_to_399_succeed_and_the_rest_fail() {
    let server = Server::start(|line| {
        let code = line
            .split_whitespace()
            .nth(1)
            .and_then(|path| path.strip_prefix('/'))
            .unwrap_or("500")
            .to_owned();
        answer(&format!("{code} Whatever"), &[], "")
    })
    .await;
    for (code, outcome) in [
        (200, true),
        (204, true),
        (304, true),
        (399, true),
        (199, false),
        (400, false),
        (404, false),
        (500, false),
        (503, false),
    ] {
        let result = probe_server(&server, &format!("/{code}")).await.result();
        assert_eq!(result.ok(), Some(outcome), "status {code}");
    }
    match probe_server(&server, "/500").await {
        Outcome::Failure(failure) => {
            assert_eq!(
                failure.to_string(),
                "HTTP probe failed with statuscode: 500"
            )
        }
        outcome => panic!("a 500 is a failure, not {outcome:?}"),
    }
}

#[tokio::test]
async fn a_redirect_to_the_same_host_is_followed() {
    let server = Server::start(|line| match line.split_whitespace().nth(1) {
        Some("/start") => answer("302 Found", &[("Location", "/ready")], ""),
        Some("/go-wrong") => answer("301 Moved Permanently", &[("Location", "broken")], ""),
        Some("/ready") => answer("200 OK", &[], "ready"),
        _ => answer("500 Internal Server Error", &[], "no"),
    })
    .await;
    let outcome = probe_server(&server, "/start").await;
    assert!(matches!(outcome, Outcome::Success), "{outcome:?}");
    // The redirect's target decides, not the redirect.
    let outcome = probe_server(&server, "/go-wrong").await;
    assert!(
        matches!(outcome, Outcome::Failure(ProbeError::Status(500))),
        "{outcome:?}"
    );
    let heads = server.heads();
    assert!(heads[1].starts_with("GET /ready HTTP/1.1\r\n"), "{heads:?}");
    let followed = header_lines(&heads[1]);
    assert!(followed.contains(&"User-Agent: kube-probe/1.35"));
    assert!(followed.contains(&"Accept: */*"));
    let referer = format!("Referer: http://127.0.0.1:{}/start", server.port);
    assert!(followed.contains(&referer.as_str()), "{followed:?}");
    assert!(
        heads[3].starts_with("GET /broken HTTP/1.1\r\n"),
        "{heads:?}"
    );
}

#[tokio::test]
async fn a_redirect_to_another_port_of_the_pod_is_followed() {
    let target = Server::start(|_| answer("200 OK", &[], "")).await;
    let location = format!("http://127.0.0.1:{}/elsewhere", target.port);
    let server =
        Server::start(move |_| answer("307 Temporary Redirect", &[("Location", &location)], ""))
            .await;
    let outcome = probe_server(&server, "/").await;
    assert!(matches!(outcome, Outcome::Success), "{outcome:?}");
    let heads = target.heads();
    assert!(
        heads[0].starts_with("GET /elsewhere HTTP/1.1\r\n"),
        "{heads:?}"
    );
    let host = format!("Host: 127.0.0.1:{}", target.port);
    assert!(header_lines(&heads[0]).contains(&host.as_str()));
}

#[tokio::test]
async fn a_redirect_to_another_host_is_a_success_with_a_warning() {
    let server = Server::start(|_| {
        answer(
            "302 Found",
            &[("Location", "http://example.invalid/ready")],
            "",
        )
    })
    .await;
    let outcome = probe_server(&server, "/").await;
    assert!(matches!(outcome, Outcome::Warning(_)), "{outcome:?}");
    assert!(matches!(outcome.result(), Ok(true)));
    assert_eq!(server.heads().len(), 1, "the other host is never asked");
}

#[tokio::test]
async fn a_redirect_to_https_on_the_same_host_fails_and_on_another_host_warns() {
    let server = Server::start(|line| match line.split_whitespace().nth(1) {
        Some("/same") => answer("302 Found", &[("Location", "https://127.0.0.1/")], ""),
        _ => answer("302 Found", &[("Location", "https://example.invalid/")], ""),
    })
    .await;
    let same = probe_server(&server, "/same").await;
    assert!(matches!(same, Outcome::Failure(_)), "{same:?}");
    let other = probe_server(&server, "/other").await;
    assert!(matches!(other, Outcome::Warning(_)), "{other:?}");
}

#[tokio::test]
async fn redirects_stop_after_ten_requests() {
    let server = Server::start(|_| answer("302 Found", &[("Location", "/again")], "")).await;
    match probe_server(&server, "/").await {
        Outcome::Failure(failure) => assert_eq!(failure.to_string(), "stopped after 10 redirects"),
        outcome => panic!("a redirect loop is a failure, not {outcome:?}"),
    }
    assert_eq!(server.heads().len(), 10);
}

#[tokio::test]
async fn a_redirect_without_a_location_is_the_answer() {
    let server = Server::start(|_| answer("302 Found", &[], "")).await;
    let outcome = probe_server(&server, "/").await;
    assert!(matches!(outcome, Outcome::Warning(_)), "{outcome:?}");
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_fails() {
    let server = Server::start(|_| {
        let mut steps = vec![Step::Sleep(Duration::from_secs(10))];
        steps.extend(answer("200 OK", &[], ""));
        steps
    })
    .await;
    let began = Instant::now();
    let outcome = probe_port(server.port, "/", &[], Duration::from_millis(300)).await;
    assert!(matches!(outcome, Outcome::Failure(_)), "{outcome:?}");
    assert!(began.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_body_is_read_up_to_ten_kibibytes_only() {
    // An answer that announces a megabyte, sends 20 KiB and then stalls: reading it
    // all would run into the timeout.
    let server = Server::start(|_| {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n";
        vec![
            Step::Write(head.as_bytes().to_vec()),
            Step::Write(vec![b'a'; 20 * 1024]),
            Step::Hold,
        ]
    })
    .await;
    let outcome = probe_port(server.port, "/", &[], Duration::from_secs(1)).await;
    assert!(matches!(outcome, Outcome::Success), "{outcome:?}");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_throws_the_result_away() {
    let server = Server::start(|_| {
        let head = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100\r\n\r\nshort";
        vec![Step::Write(head.as_bytes().to_vec()), Step::Hold]
    })
    .await;
    let outcome = probe_port(server.port, "/", &[], Duration::from_millis(300)).await;
    assert!(matches!(outcome, Outcome::Error(_)), "{outcome:?}");
    assert!(outcome.result().is_err());
}

#[tokio::test]
async fn a_closed_port_fails() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    let outcome = probe_port(port, "/", &[], TIMEOUT).await;
    assert!(matches!(outcome, Outcome::Failure(_)), "{outcome:?}");
}

#[tokio::test]
async fn manifest_headers_replace_the_defaults() {
    let server = Server::start(|_| answer("200 OK", &[], "")).await;
    let headers = [
        ("Host", "example.com"),
        ("user-agent", "custom/1"),
        ("Accept", ""),
        ("x-probe-token", "t1"),
        ("X-Twice", "a"),
        ("X-Twice", "b"),
    ]
    .map(|(n, v)| (n.to_owned(), v.to_owned()));
    let outcome = probe_port(server.port, "health", &headers, TIMEOUT).await;
    assert!(matches!(outcome, Outcome::Success), "{outcome:?}");
    let heads = server.heads();
    assert!(
        heads[0].starts_with("GET /health HTTP/1.1\r\n"),
        "{heads:?}"
    );
    let lines = header_lines(&heads[0]);
    for expected in [
        "Host: example.com",
        "User-Agent: custom/1",
        "X-Probe-Token: t1",
        "X-Twice: a",
        "X-Twice: b",
    ] {
        assert!(lines.contains(&expected), "{expected} in {lines:?}");
    }
    assert!(
        !lines.iter().any(|l| l.starts_with("Accept")),
        "an empty Accept removes the header: {lines:?}"
    );
}

#[tokio::test]
async fn a_custom_host_survives_only_a_relative_redirect() {
    let target = Server::start(|_| answer("200 OK", &[], "")).await;
    let absolute = format!("http://127.0.0.1:{}/b", target.port);
    let server = Server::start(move |line| match line.split_whitespace().nth(1) {
        Some("/relative") => answer("302 Found", &[("Location", "/a")], ""),
        Some("/absolute") => answer("302 Found", &[("Location", &absolute)], ""),
        _ => answer("200 OK", &[], ""),
    })
    .await;
    let headers = [("Host".to_owned(), "example.com".to_owned())];
    probe_port(server.port, "/relative", &headers, TIMEOUT).await;
    assert!(header_lines(&server.heads()[1]).contains(&"Host: example.com"));
    probe_port(server.port, "/absolute", &headers, TIMEOUT).await;
    let host = format!("Host: 127.0.0.1:{}", target.port);
    assert!(header_lines(&target.heads()[0]).contains(&host.as_str()));
}

#[test]
fn locations_resolve_against_the_url_they_answer() {
    let base = Target {
        scheme: "http".to_owned(),
        host: POD_HOST.to_owned(),
        port: 8080,
        path_and_query: "/a/b?x=1".to_owned(),
    };
    let path = |location: &str| resolve(&base, location).map(|t| t.path_and_query);
    assert_eq!(path("c").as_deref(), Some("/a/c"));
    assert_eq!(path("../c").as_deref(), Some("/c"));
    assert_eq!(path("./").as_deref(), Some("/a/"));
    assert_eq!(path("/x/./y/../z?q").as_deref(), Some("/x/z?q"));
    assert_eq!(path("?y=2").as_deref(), Some("/a/b?y=2"));
    assert_eq!(path("#top").as_deref(), Some("/a/b?x=1"));
    assert_eq!(path("/with space").as_deref(), Some("/with%20space"));
    let absolute = resolve(&base, "http://127.0.0.1:9090/p").expect("an http URL");
    assert_eq!((absolute.host.as_str(), absolute.port), ("127.0.0.1", 9090));
    let network = resolve(&base, "//localhost/p").expect("a network path");
    assert_eq!((network.host.as_str(), network.port), ("localhost", 80));
    let secure = resolve(&base, "HTTPS://127.0.0.1/").expect("an https URL");
    assert_eq!((secure.scheme.as_str(), secure.port), ("https", 443));
    assert_eq!(resolve(&base, "http://127.0.0.1:port/"), None);
}
