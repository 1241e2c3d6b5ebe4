//! HTTP probes, made as the kubelet's prober makes them (pkg/probe/http over Go's
//! net/http client): one HTTP/1.1 GET per connection, redirects to the same host
//! followed, the body read up to a limit, all of it within the probe's timeout.

use crate::errors::ProbeError;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The body is read up to this much; the rest is left unread
/// (`maxRespBodyLength = 10 * 1 << 10 // 10KB`).
const MAX_BODY: usize = 10 * 1024;

/// Go's client sends at most this many requests for one probe: the original and the
/// redirects it follows (`if len(via) >= 10 { return errors.New("stopped after 10
/// redirects") }`).
const MAX_REQUESTS: usize = 10;

/// The pod's address as the runtime reaches it, from inside the pod's network namespace.
const POD_HOST: &str = "127.0.0.1";

/// One HTTP probe's request, from the manifest's `httpGet`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HttpGet<'a> {
    pub port: u16,
    pub path: &'a str,
    pub headers: &'a [(String, String)],
    pub user_agent: &'a str,
}

/// What one HTTP probe found.
#[derive(Debug)]
#[allow(
    dead_code,
    reason = "a warning's status and a failure's cause are the probe's output, which the \
              kubelet puts in events; the local runtime records no events, its tests read them"
)]
pub(crate) enum Outcome {
    Success,
    /// The answer was a redirect the prober did not follow (to another host), or
    /// another 3xx: a success, with a warning.
    Warning(StatusCode),
    Failure(ProbeError),
    /// The probe could not be carried through; its result is thrown away.
    Error(ProbeError),
}

impl Outcome {
    /// The result as probe workers count it: `Err` when it is thrown away.
    pub fn result(self) -> Result<bool, ProbeError> {
        // pkg/kubelet/prober/prober.go: `case probe.Warning: ... return results.Success, nil`
        match self {
            Outcome::Success | Outcome::Warning(_) => Ok(true),
            Outcome::Failure(_) => Ok(false),
            Outcome::Error(reason) => Err(reason),
        }
    }
}

/// Where one request of the probe goes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    /// `http`, or the scheme of a Location that names another.
    scheme: String,
    host: String,
    port: u16,
    /// The request target: an absolute path, maybe with a query.
    path_and_query: String,
}

impl Target {
    /// `host:port`, as Go's `URL.Host` holds it for the pod's address.
    fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme,
            self.authority(),
            self.path_and_query
        )
    }
}

/// Runs one HTTP probe; `connect` opens a TCP connection to a port of the pod.
pub(crate) async fn probe<C, F>(connect: C, get: HttpGet<'_>, timeout: Duration) -> Outcome
where
    C: Fn(u16) -> F,
    F: Future<Output = std::io::Result<TcpStream>>,
{
    // Go's `http.Client.Timeout` covers the connections, every redirect and reading
    // the body.
    let deadline = Instant::now() + timeout;
    let headers = match probe_headers(get.headers, get.user_agent) {
        Ok(headers) => headers,
        // Go's transport refuses such a request when it is sent: a failure.
        Err(reason) => return Outcome::Failure(reason),
    };
    // `req.Host = headers.Get("Host")`: a Host header of the manifest replaces the default.
    let custom_host = first_value(get.headers, "Host").filter(|h| !h.is_empty());
    let explicit_referer = first_value(get.headers, "Referer").filter(|r| !r.is_empty());
    let mut target = Target {
        scheme: "http".to_owned(),
        host: POD_HOST.to_owned(),
        port: get.port,
        // `url.Parse(path)` leaves a fragment out of the request.
        path_and_query: escape(&with_leading_slash(
            get.path.split('#').next().unwrap_or_default(),
        )),
    };
    let mut host = custom_host.map_or_else(|| target.authority(), str::to_owned);
    let mut referer: Option<String> = None;
    let mut requests = 0;
    let (response, _connection) = loop {
        requests += 1;
        let request = request(&target, &host, &headers, referer.as_deref());
        let exchange = tokio::time::timeout_at(deadline, send(&connect, &target, request));
        let (response, connection) = match exchange.await {
            Ok(Ok(exchange)) => exchange,
            Ok(Err(error)) => return Outcome::Failure(error),
            Err(_) => {
                return Outcome::Failure(ProbeError::TimedOut(format!("GET {}", target.url())))
            }
        };
        let Some(location) = redirect_location(&response) else {
            break (response, connection);
        };
        let Some(next) = resolve(&target, &location) else {
            return Outcome::Failure(ProbeError::Location(location));
        };
        // Go's client keeps a custom Host header through a redirect only to a relative
        // location ("If the caller specified a custom host header and the redirect
        // location is relative, preserve the Host header through the redirect.").
        host = match custom_host {
            Some(custom) if !is_absolute(&location) => custom.to_owned(),
            _ => next.authority(),
        };
        referer = Some(explicit_referer.map_or_else(|| target.url(), str::to_owned));
        // RedirectChecker(followNonLocalRedirects=false): `if req.URL.Hostname() !=
        // via[0].URL.Hostname() { return http.ErrUseLastResponse }`, so the redirect
        // itself is the answer.
        if next.host != POD_HOST {
            break (response, connection);
        }
        if requests >= MAX_REQUESTS {
            return Outcome::Failure(ProbeError::TooManyRedirects(MAX_REQUESTS));
        }
        if next.scheme != "http" {
            // Go would speak TLS for https, which the local runtime cannot; other
            // schemes fail in Go's transport too.
            return Outcome::Failure(ProbeError::RedirectScheme(next.url()));
        }
        target = next;
    };
    let status = response.status();
    match tokio::time::timeout_at(deadline, read_at_most(response.into_body(), MAX_BODY)).await {
        Ok(Ok(_)) => {}
        // DoHTTPProbe: a body that cannot be read is an error (`return probe.Failure,
        // "", err`), which the prober's worker throws away; the limit is not.
        Ok(Err(error)) => return Outcome::Error(error),
        Err(_) => {
            let what = format!("read the body of {}", target.url());
            return Outcome::Error(ProbeError::TimedOut(what));
        }
    }
    // DoHTTPProbe: `if res.StatusCode >= http.StatusOK && res.StatusCode <
    // http.StatusBadRequest { if res.StatusCode >= http.StatusMultipleChoices { //
    // Redirect ... return probe.Warning, ...`
    match status.as_u16() {
        200..=299 => Outcome::Success,
        300..=399 => Outcome::Warning(status),
        code => Outcome::Failure(ProbeError::Status(code)),
    }
}

/// The headers every request of the probe carries, as the kubelet's
/// `newProbeRequest` sets them and Go's client writes them.
fn probe_headers(manifest: &[(String, String)], user_agent: &str) -> Result<HeaderMap, ProbeError> {
    let mut headers = HeaderMap::new();
    for (name, value) in manifest {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| invalid(format!("use header name {name:?}"), e))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| invalid(format!("use the value of header {name:?}"), e))?;
        headers.append(header_name, value);
    }
    // Go writes `req.Host`, never a Host in the header map.
    headers.remove(http::header::HOST);
    // `if _, ok := headers["User-Agent"]; !ok { headers.Set("User-Agent", ...) }`; Go
    // writes only the first value, and none when it is empty.
    match first(&headers, &http::header::USER_AGENT) {
        None => {
            let agent = HeaderValue::from_str(user_agent)
                .map_err(|e| invalid(format!("use user agent {user_agent:?}"), e))?;
            headers.insert(http::header::USER_AGENT, agent);
        }
        Some(agent) if agent.is_empty() => {
            headers.remove(http::header::USER_AGENT);
        }
        Some(agent) => {
            headers.insert(http::header::USER_AGENT, agent);
        }
    }
    // `if _, ok := headers["Accept"]; !ok { headers.Set("Accept", "*/*") } else if
    // headers.Get("Accept") == "" { headers.Del("Accept") }`
    match first(&headers, &http::header::ACCEPT) {
        None => {
            headers.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
        }
        Some(accept) if accept.is_empty() => {
            headers.remove(http::header::ACCEPT);
        }
        Some(_) => {}
    }
    // The prober's transport has `DisableKeepAlives: true`.
    headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    Ok(headers)
}

fn first(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    headers.get(name).cloned()
}

/// The first value of a manifest header, named case-insensitively as Go's
/// canonical keys are.
fn first_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn request(
    target: &Target,
    host: &str,
    headers: &HeaderMap,
    referer: Option<&str>,
) -> Result<Request<Empty<Bytes>>, ProbeError> {
    let path = &target.path_and_query;
    let mut request = Request::get(path.as_str())
        .body(Empty::new())
        .map_err(|e| invalid(format!("request {path:?}"), e))?;
    let mut all = HeaderMap::with_capacity(headers.len() + 2);
    let host =
        HeaderValue::from_str(host).map_err(|e| invalid(format!("use Host header {host:?}"), e))?;
    all.insert(http::header::HOST, host);
    all.extend(headers.clone());
    if let Some(referer) = referer.and_then(|r| HeaderValue::from_str(r).ok()) {
        all.insert(http::header::REFERER, referer);
    }
    *request.headers_mut() = all;
    Ok(request)
}

fn invalid(action: String, source: impl Into<http::Error>) -> ProbeError {
    ProbeError::InvalidRequest {
        action,
        source: source.into(),
    }
}

/// Stops a connection's task when the probe is done with it.
struct Connection(tokio::task::JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends one request on a new connection and waits for the response's head.
async fn send<C, F>(
    connect: &C,
    target: &Target,
    request: Result<Request<Empty<Bytes>>, ProbeError>,
) -> Result<(Response<Incoming>, Connection), ProbeError>
where
    C: Fn(u16) -> F,
    F: Future<Output = std::io::Result<TcpStream>>,
{
    let request = request?;
    let stream = connect(target.port)
        .await
        .map_err(|e| ProbeError::io(format!("dial {}", target.authority()), e))?;
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        // Go writes canonical header names (`User-Agent`); some servers care.
        .title_case_headers(true)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ProbeError::Http {
            action: format!("speak HTTP/1.1 to {}", target.authority()),
            source,
        })?;
    let connection = Connection(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(|source| ProbeError::Http {
            action: format!("GET {}", target.url()),
            source,
        })?;
    Ok((response, connection))
}

/// The Location of a redirect Go's client would follow (301, 302, 303, 307, 308 for a
/// GET), if it has one: without it the response is the answer.
fn redirect_location(response: &Response<Incoming>) -> Option<String> {
    let follows = matches!(
        response.status(),
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    );
    let location = response.headers().get(http::header::LOCATION)?;
    let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
    (follows && !location.is_empty()).then_some(location)
}

/// Reads up to `limit` bytes of the body (Go's `utilio.ReadAtMost`: reaching the
/// limit is not an error).
async fn read_at_most(mut body: Incoming, limit: usize) -> Result<usize, ProbeError> {
    let mut read = 0;
    while read < limit {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
            Some(Err(source)) => {
                return Err(ProbeError::Http {
                    action: "read the response body".to_owned(),
                    source,
                })
            }
        }
    }
    Ok(read.min(limit))
}

/// Whether a Location is an absolute URL (it has a scheme).
fn is_absolute(location: &str) -> bool {
    scheme(location).is_some()
}

fn scheme(reference: &str) -> Option<&str> {
    let (scheme, _) = reference.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// Resolves a Location against the URL it answered (RFC 3986, section 5.2, as Go's
/// `URL.Parse` does); `None` when it cannot be parsed.
fn resolve(base: &Target, location: &str) -> Option<Target> {
    let location = location.split('#').next().unwrap_or_default();
    if let Some(scheme) = scheme(location) {
        let scheme = scheme.to_ascii_lowercase();
        let rest = &location[scheme.len() + 1..];
        if !rest.starts_with("//") {
            // An opaque URL (`mailto:...`): a host of its own, the empty one.
            return Some(Target {
                scheme,
                host: String::new(),
                port: 0,
                path_and_query: rest.to_owned(),
            });
        }
        return network_path(&scheme, rest);
    }
    if location.starts_with("//") {
        return network_path(&base.scheme, location);
    }
    let (base_path, base_query) = split_query(&base.path_and_query);
    let (path, query) = split_query(location);
    let (path, query) = if path.is_empty() {
        (base_path.to_owned(), query.or(base_query))
    } else if path.starts_with('/') {
        (remove_dot_segments(path), query)
    } else {
        let directory = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        (remove_dot_segments(&format!("{directory}{path}")), query)
    };
    Some(Target {
        scheme: base.scheme.clone(),
        host: base.host.clone(),
        port: base.port,
        path_and_query: escape(&join_query(&with_leading_slash(&path), query)),
    })
}

/// `//host[:port]/path?query`
fn network_path(scheme: &str, reference: &str) -> Option<Target> {
    let rest = reference.strip_prefix("//")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(end);
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port),
        _ => (authority, ""),
    };
    let port = if port.is_empty() {
        if scheme == "https" {
            443
        } else {
            80
        }
    } else {
        port.parse().ok()?
    };
    let (path, query) = split_query(path_and_query);
    Some(Target {
        scheme: scheme.to_owned(),
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
        path_and_query: escape(&join_query(
            &with_leading_slash(&remove_dot_segments(path)),
            query,
        )),
    })
}

fn split_query(reference: &str) -> (&str, Option<&str>) {
    match reference.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (reference, None),
    }
}

fn join_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    }
}

/// Go's `URL.String()` puts a `/` between the host and a relative path.
fn with_leading_slash(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

/// RFC 3986, section 5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (index, segment) in segments.iter().enumerate() {
        let last = index + 1 == segments.len();
        match *segment {
            "." => {
                if last {
                    output.push("");
                }
            }
            ".." => {
                if output.len() > 1 {
                    output.pop();
                }
                if last {
                    output.push("");
                }
            }
            segment => output.push(segment),
        }
    }
    let joined = output.join("/");
    if path.starts_with('/') && !joined.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

/// Percent-encodes what may not stand in a request target (spaces, quotes, non-ASCII),
/// as Go's URL escaping does; existing escapes stay.
fn escape(path_and_query: &str) -> String {
    let mut escaped = String::with_capacity(path_and_query.len());
    for byte in path_and_query.bytes() {
        let allowed = byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&byte);
        if allowed {
            escaped.push(byte as char);
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

#[cfg(test)]
#[path = "http_get_tests.rs"]
mod tests;
