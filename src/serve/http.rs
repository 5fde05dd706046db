//! A small, bounded HTTP/1.1 server for GET requests: a thread per
//! connection up to a cap, each request head read within a deadline and a
//! size limit, parsed by `httparse`, answered, and the connection closed.
//!
//! Why not tiny_http (the usual synchronous server crate): its 0.12 reads
//! header lines without a size limit, sets no read or write timeout, starts
//! a thread for every connection without a cap, and ends its accept loop at
//! the first accept error (too many open files, say), after which nothing
//! is ever answered again. A metrics endpoint that 200 slow clients must not
//! silence needs all four bounded.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// The most connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 512;
/// A request head (request line and headers) may not be longer.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// The whole request head must arrive within this: a client that sends a
/// byte now and then cannot hold its thread for longer.
const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// A client that reads its answer slower than this is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long, and how much, a closing connection reads and drops.
const LINGER: Duration = Duration::from_secs(1);
const MAX_LINGER_BYTES: usize = 64 * 1024;
/// Each connection's thread needs little: the head buffer and the answer.
const THREAD_STACK: usize = 128 * 1024;

/// What a handler answers.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// Binds `listen`; fails at once (address in use, no permission).
pub fn bind(listen: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))
}

/// Serves GET requests on `listener` with `handler(path)` until the process
/// ends. Never returns.
pub fn serve(listener: TcpListener, handler: Arc<dyn Fn(&str) -> Response + Send + Sync>) -> ! {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            // Out of file descriptors, a connection reset before accept:
            // that one connection is lost, never the server.
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(
                limit = MAX_CONNECTIONS,
                "too many connections: one closed at once"
            );
            continue;
        }
        let (served, handler) = (Arc::clone(&open), Arc::clone(&handler));
        let spawned = thread::Builder::new()
            .name("http".to_owned())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                answer(stream, handler.as_ref());
                served.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start a thread for a connection");
            open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Reads one request head, answers it, closes the connection.
fn answer(mut stream: TcpStream, handler: &(dyn Fn(&str) -> Response + Sync)) {
    let response = match read_head(&mut stream) {
        Ok(head) => route(&head, handler),
        Err(Refused::Closed) => return,
        Err(Refused::Status(status, why)) => Response::text(status, format!("{why}\n")),
    };
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let reason = match response.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    let written = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(response.body.as_bytes()))
        .and_then(|()| stream.shutdown(Shutdown::Write));
    if written.is_ok() {
        linger(&mut stream);
    }
}

/// Reads what the client still sends (the rest of a refused request) for
/// a moment before closing: closing a socket with unread input makes the
/// kernel reset the connection, and the client may lose the answer.
fn linger(stream: &mut TcpStream) {
    let until = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut left = MAX_LINGER_BYTES;
    while left > 0 {
        let wait = until.saturating_duration_since(Instant::now());
        if wait.is_zero() || stream.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

enum Refused {
    /// The client went away or sent nothing in time: nothing to answer.
    Closed,
    Status(u16, &'static str),
}

/// The bytes up to the blank line that ends the head, within the size
/// limit and the deadline.
fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, Refused> {
    let deadline = Instant::now() + HEAD_DEADLINE;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(if head.is_empty() {
                Refused::Closed
            } else {
                Refused::Status(408, "the request head did not arrive in time")
            });
        }
        if stream.set_read_timeout(Some(left)).is_err() {
            return Err(Refused::Closed);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(Refused::Closed),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                continue;
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Err(Refused::Closed),
        }
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(head);
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err(Refused::Status(431, "the request head is too large"));
        }
    }
}

/// GET of a path; nothing else.
fn route(head: &[u8], handler: &(dyn Fn(&str) -> Response + Sync)) -> Response {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => {
            return Response::text(400, "malformed request\n");
        }
    }
    match request.method {
        Some("GET") => {}
        _ => return Response::text(405, "only GET is served: no action is taken over HTTP\n"),
    }
    let path = request.path.unwrap_or("/");
    // The query string does not choose anything here.
    handler(path.split_once('?').map_or(path, |(path, _)| path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(path: &str) -> Response {
        Response::text(200, format!("path {path}"))
    }

    #[test]
    fn routes_gets_and_refuses_the_rest() {
        let answer = |head: &str| route(head.as_bytes(), &handler);
        let ok = answer("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!((ok.status, ok.body.as_str()), (200, "path /metrics"));
        assert_eq!(answer("POST /metrics HTTP/1.1\r\n\r\n").status, 405);
        assert_eq!(answer("GARBAGE\r\n\r\n").status, 400);
        assert_eq!(answer("GET /x HTTP/1.1\r\nBad Header\r\n\r\n").status, 400);
    }
}
