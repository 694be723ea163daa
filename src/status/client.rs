//! `GET /status` from a running proxymgr, for `proxymgr status`: HTTP/1.0 over a std `TcpStream`, the whole
//! exchange bounded by one timeout, the body parsed as a [`Status`].
//!
//! Minimal on purpose: one request to proxymgr's own endpoint, which answers an HTTP/1.0 request with the
//! whole body and closes (no chunks, no keep-alive), so an HTTP client crate would bring much and add nothing.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::model::Status;

/// The largest answer read: a status of thousands of services with dozens of servers each is a few megabytes.
const MAX_ANSWER: usize = 64 << 20;

/// Why no `Status` came from `address`. Every variant names the address.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{address}: cannot connect: {source}")]
    Connect { address: SocketAddr, source: io::Error },
    #[error("{address}: no answer within {}s", timeout.as_secs_f64())]
    Timeout { address: SocketAddr, timeout: Duration },
    #[error("{address}: closed the connection without an answer")]
    Closed { address: SocketAddr },
    #[error("{address}: reading the answer: {source}")]
    Read { address: SocketAddr, source: io::Error },
    #[error("{address}: GET /status answered HTTP {code}")]
    Http { address: SocketAddr, code: u16 },
    #[error("{address}: {reason}")]
    Parse { address: SocketAddr, reason: String },
}

impl FetchError {
    /// Whether nothing listens at the address: the connection was refused.
    pub fn is_refused(&self) -> bool {
        matches!(self, FetchError::Connect { source, .. } if source.kind() == ErrorKind::ConnectionRefused)
    }
}

/// `GET /status` from `address`; connecting, sending and reading all within `timeout`.
pub fn fetch(address: SocketAddr, timeout: Duration) -> Result<Status, FetchError> {
    let deadline = Instant::now() + timeout;
    let timed_out = || FetchError::Timeout { address, timeout };
    let mut stream = TcpStream::connect_timeout(&address, timeout).map_err(|source| {
        if is_timeout(&source) {
            timed_out()
        } else {
            FetchError::Connect { address, source }
        }
    })?;
    let remaining = || deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
    let lost = |source: io::Error, answer: &[u8]| {
        if is_timeout(&source) {
            timed_out()
        } else if answer.is_empty() && is_closed(&source) {
            FetchError::Closed { address }
        } else {
            FetchError::Read { address, source }
        }
    };

    let request = format!(
        "GET /status HTTP/1.0\r\nHost: {address}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream.set_write_timeout(Some(remaining().ok_or_else(timed_out)?)).map_err(|e| lost(e, &[]))?;
    stream.write_all(request.as_bytes()).map_err(|e| lost(e, &[]))?;

    let mut answer = Vec::new();
    let mut buffer = [0; 16 << 10];
    loop {
        stream.set_read_timeout(Some(remaining().ok_or_else(timed_out)?)).map_err(|e| lost(e, &answer))?;
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(lost(e, &answer)),
        }
        if answer.len() > MAX_ANSWER {
            let reason = format!("the answer is larger than {} MiB", MAX_ANSWER >> 20);
            return Err(FetchError::Parse { address, reason });
        }
    }
    parse(address, &answer)
}

/// The status line (200 only), the headers, and the body as JSON.
fn parse(address: SocketAddr, answer: &[u8]) -> Result<Status, FetchError> {
    let parse_error = |reason: String| FetchError::Parse { address, reason };
    if answer.is_empty() {
        return Err(FetchError::Closed { address });
    }
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(parse_error(String::from("the answer ends before its headers do")));
    };
    let head = String::from_utf8_lossy(&answer[..end]);
    let mut body = &answer[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.split(' ');
    let code = match (words.next(), words.next().map(str::parse::<u16>)) {
        (Some(version), Some(Ok(code))) if version.starts_with("HTTP/") => code,
        _ => return Err(parse_error(format!("not an HTTP status line: {:?}", truncate(status_line)))),
    };
    if code != 200 {
        return Err(FetchError::Http { address, code });
    }
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let length: usize =
                value.parse().map_err(|_| parse_error(format!("Content-Length: {:?}", truncate(value))))?;
            if body.len() < length {
                return Err(parse_error(format!("the body ends at {} of its {length} bytes", body.len())));
            }
            body = &body[..length];
        } else if name.eq_ignore_ascii_case("transfer-encoding") && !value.eq_ignore_ascii_case("identity") {
            // Not to be sent to an HTTP/1.0 request.
            return Err(parse_error(format!(
                "Transfer-Encoding: {:?} to an HTTP/1.0 request",
                truncate(value)
            )));
        }
    }
    serde_json::from_slice(body).map_err(|e| parse_error(format!("the body is not a proxymgr status: {e}")))
}

/// At most 80 characters of a line the server sent, for an error message.
fn truncate(text: &str) -> &str {
    text.char_indices().nth(80).map_or(text, |(cut, _)| &text[..cut])
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(error.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock)
}

/// The peer closed or reset the connection: a server that closes without reading the request resets it.
fn is_closed(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// What the test server does with its one connection.
    enum Server {
        /// Reads the request, answers these bytes and closes.
        Answers(Vec<u8>),
        /// Closes at once, without reading the request.
        Closes,
        /// Reads the request and answers nothing until the client gives up.
        Silent,
    }

    /// A listener on 127.0.0.1 (a port the kernel picks and this test holds) and a thread that serves one
    /// connection; the request line it read comes through the receiver.
    fn serve(server: Server) -> (SocketAddr, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let address = listener.local_addr().expect("its address");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let Ok((stream, _)) = listener.accept() else { return };
            if matches!(server, Server::Closes) {
                return;
            }
            let mut reader = io::BufReader::new(&stream);
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = sender.send(request_line);
            match server {
                Server::Answers(bytes) => {
                    let _ = (&stream).write_all(&bytes);
                }
                // Holds the connection until the client closes it.
                _ => while reader.read_line(&mut line).is_ok_and(|n| n > 0) {},
            }
        });
        (address, receiver)
    }

    fn answer(status_line: &str, headers: &str, body: &str) -> Server {
        Server::Answers(format!("{status_line}\r\n{headers}\r\n{body}").into_bytes())
    }

    fn status() -> Status {
        Status {
            version: "0.1.0".into(),
            published: 1_700_000_000.5,
            source: "file".into(),
            ..Default::default()
        }
    }

    #[test]
    fn fetches_a_status() {
        let body = serde_json::to_string(&status()).expect("JSON");
        let headers = format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len());
        let (address, request) = serve(answer("HTTP/1.0 200 OK", &headers, &body));
        let fetched = fetch(address, Duration::from_secs(5)).expect("a status");
        assert_eq!(fetched, status());
        assert_eq!(request.recv().expect("the request").trim_end(), "GET /status HTTP/1.0");
    }

    #[test]
    fn fetch_errors() {
        let body = serde_json::to_string(&status()).expect("JSON");
        type Expected = fn(&FetchError) -> bool;
        let cases: Vec<(&str, Server, Expected, &str)> = vec![
            (
                "500",
                answer("HTTP/1.1 500 Internal Server Error", "Content-Length: 4\r\n", "oops"),
                |e| matches!(e, FetchError::Http { code: 500, .. }),
                "GET /status answered HTTP 500",
            ),
            (
                "closing at once",
                Server::Closes,
                |e| matches!(e, FetchError::Closed { .. }),
                "without an answer",
            ),
            ("silent", Server::Silent, |e| matches!(e, FetchError::Timeout { .. }), "no answer within 0.3s"),
            (
                "not HTTP",
                Server::Answers(b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec()),
                |e| matches!(e, FetchError::Parse { .. }),
                "not an HTTP status line: \"SSH-2.0-OpenSSH_9.2\"",
            ),
            (
                "headers cut short",
                Server::Answers(b"HTTP/1.0 200 OK\r\nContent-Le".to_vec()),
                |e| matches!(e, FetchError::Parse { .. }),
                "ends before its headers do",
            ),
            (
                "body cut short",
                answer("HTTP/1.0 200 OK", "Content-Length: 9999\r\n", &body),
                |e| matches!(e, FetchError::Parse { .. }),
                "of its 9999 bytes",
            ),
            (
                "chunked",
                answer("HTTP/1.1 200 OK", "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
                |e| matches!(e, FetchError::Parse { .. }),
                "Transfer-Encoding: \"chunked\"",
            ),
            (
                "not a status",
                answer("HTTP/1.0 200 OK", "", "{\"hello\": 1}"),
                |e| matches!(e, FetchError::Parse { .. }),
                "the body is not a proxymgr status",
            ),
        ];
        for (name, server, expected, text) in cases {
            let (address, _request) = serve(server);
            let error = fetch(address, Duration::from_millis(300)).expect_err(name);
            assert!(expected(&error), "{name}: {error:?}");
            let message = error.to_string();
            assert!(message.starts_with(&format!("{address}: ")), "{name}: names the address: {message}");
            assert!(message.contains(text), "{name}: {message}");
            assert!(!error.is_refused(), "{name}");
        }
    }

    #[test]
    fn nobody_listening_is_refused() {
        // A port the kernel just handed out and that was closed again: nothing listens on it.
        let address = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port");
        let error = fetch(address, Duration::from_secs(5)).expect_err("refused");
        assert!(error.is_refused(), "{error:?}");
        assert!(error.to_string().starts_with(&format!("{address}: cannot connect: ")), "{error}");
    }
}
