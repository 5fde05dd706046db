//! A small, bounded HTTP/1.1 server for GET and HEAD: a thread per
//! connection up to a cap, each request head read within a deadline and a
//! size limit, parsed by `httparse` as it arrives, answered, and the
//! connection closed. With a web config, connections speak TLS (rustls,
//! driven here so that the handshake counts against the head's deadline)
//! and requests need a basic-auth password.
//!
//! Why not tiny_http (the usual synchronous server crate): its 0.12 reads
//! header lines without a size limit, sets no read or write timeout, starts
//! a thread for every connection without a cap, and ends its accept loop at
//! the first accept error (too many open files, say), after which nothing
//! is ever answered again. A metrics endpoint that 200 slow clients must not
//! silence needs all four bounded.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine;
use rustls::ServerConnection;

use super::webconfig::{Denied, Live, WebConfig};
use crate::mutex::lock;

/// The most connections served at once. A new one past it takes the place
/// of the oldest that is not being answered (see [`Phase::rank`]), else
/// is closed at once.
pub(crate) const MAX_CONNECTIONS: usize = 512;
/// A request head (request line, headers, the blank line) may not be longer.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Header lines a request may have.
const MAX_HEADERS: usize = 64;
/// The TLS handshake (with TLS), the whole request head and the wait for
/// a password check all end within this: a client that sends a byte now
/// and then cannot hold its thread for longer.
const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// A client that reads its answer slower than this is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long, and how much, a closing connection reads and drops.
const LINGER: Duration = Duration::from_secs(1);
const MAX_LINGER_BYTES: usize = 64 * 1024;
/// Each connection's thread needs little: the head buffer and the answer;
/// with a web config a TLS handshake and a bcrypt check too, which fit in
/// 64 KiB even on a debug build (tried: 32 KiB overflows).
const THREAD_STACK: usize = 128 * 1024;
/// At most one warning this often about connections closed for room.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What a handler answers: shared, so that a body kept in memory is
/// served without a copy.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Arc<str>,
    /// The same body gzipped, where the handler has it: sent to a client
    /// whose `Accept-Encoding` takes gzip.
    pub gzip: Option<Arc<[u8]>>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Arc::from(body.into()),
            gzip: None,
        }
    }
}

/// Binds `listen`; fails at once (address in use, no permission).
pub fn bind(listen: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))
}

/// A connection being served, as the accept loop sees it.
struct Open {
    id: u64,
    stream: Arc<TcpStream>,
    phase: Arc<Phase>,
}

/// How far a connection has got, as its thread tells the accept loop.
#[derive(Default)]
struct Phase(AtomicU8);

impl Phase {
    /// Nothing received yet.
    const SILENT: u8 = 0;
    /// TLS bytes received, the handshake not done: half-open. One byte
    /// (a record header) is enough to get here.
    const HANDSHAKE: u8 = 1;
    /// The request head arriving.
    const HEAD: u8 = 2;
    /// Its password being checked, or being answered. Not closed for
    /// room: a thread waiting for a password check would not see it, and
    /// the threads would no longer be bounded.
    const ANSWER: u8 = 3;
    /// Answered, reading what the client still sends before closing.
    const LINGER: u8 = 4;

    fn set(&self, phase: u8) {
        self.0.store(phase, Ordering::SeqCst);
    }

    /// Which connections are closed first for a new one, lowest first:
    /// one silent, a half-open TLS handshake, an unfinished request head,
    /// one already answered (last: closed with unread input, its answer
    /// may still be lost to a reset); never one being answered. A client
    /// that sends a byte and stalls holds its place only until those who
    /// came after it need the room: a scrape, whose handshake and head
    /// take milliseconds, is not kept out by any number of them.
    fn rank(phase: u8) -> Option<u8> {
        match phase {
            Phase::SILENT => Some(0),
            Phase::HANDSHAKE => Some(1),
            Phase::HEAD => Some(2),
            Phase::LINGER => Some(3),
            _ => None,
        }
    }
}

/// The connection to close for room among `phases` (oldest first): the
/// oldest of the lowest [`Phase::rank`]; `None` when all are answered.
fn to_close(phases: impl Iterator<Item = u8>) -> Option<usize> {
    phases
        .enumerate()
        .filter_map(|(index, phase)| Some((Phase::rank(phase)?, index)))
        .min()
        .map(|(_, index)| index)
}

/// The connections being served, oldest first.
#[derive(Default)]
struct Connections {
    open: Mutex<Vec<Open>>,
}

impl Connections {
    /// Makes room for one more: under the cap, or by closing the one
    /// [`to_close`] chooses (its thread sees the end of its input and
    /// ends). When every one is being answered the new one is not taken:
    /// it would wait for no one's deadline but its own.
    fn admit(&self, id: u64, stream: &Arc<TcpStream>, phase: &Arc<Phase>) -> Admitted {
        let mut open = lock(&self.open);
        let mut admitted = Admitted::Room;
        if open.len() >= MAX_CONNECTIONS {
            let phases = open.iter().map(|o| o.phase.0.load(Ordering::SeqCst));
            let Some(index) = to_close(phases) else {
                return Admitted::Full;
            };
            let _ = open.remove(index).stream.shutdown(Shutdown::Both);
            admitted = Admitted::InPlaceOfAnother;
        }
        open.push(Open {
            id,
            stream: Arc::clone(stream),
            phase: Arc::clone(phase),
        });
        admitted
    }

    fn close(&self, id: u64) {
        lock(&self.open).retain(|o| o.id != id);
    }
}

enum Admitted {
    Room,
    InPlaceOfAnother,
    Full,
}

/// One warning now and then for a kind of event that may come by the
/// thousand (a client holding connections open), with how many since.
struct Throttled {
    what: &'static str,
    last: Option<Instant>,
    since: u64,
}

impl Throttled {
    fn new(what: &'static str) -> Self {
        Throttled {
            what,
            last: None,
            since: 0,
        }
    }

    fn happened(&mut self) {
        self.since += 1;
        if self.last.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            tracing::warn!(limit = MAX_CONNECTIONS, count = self.since, "{}", self.what);
            self.last = Some(Instant::now());
            self.since = 0;
        }
    }
}

/// Serves GET and HEAD requests on `listener` with `handler(path)`, as
/// `web` asks (TLS, auth, headers), until the process ends. Never returns.
pub fn serve(
    listener: TcpListener,
    web: Arc<Live>,
    handler: Arc<dyn Fn(&str) -> Response + Send + Sync>,
) -> ! {
    let connections = Arc::new(Connections::default());
    let mut evicted = Throttled::new(
        "connections at the limit: the oldest not being answered (silent, half-open TLS, \
         an unfinished request, an answered one lingering) closed for new ones",
    );
    let mut refused =
        Throttled::new("connections at the limit, each being answered: new ones closed at once");
    let mut next_id = 0u64;
    loop {
        let id = next_id;
        next_id += 1;
        let stream = match listener.accept() {
            Ok((stream, _)) => Arc::new(stream),
            // Out of file descriptors, a connection reset before accept:
            // that one connection is lost, never the server.
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let phase = Arc::new(Phase::default());
        match connections.admit(id, &stream, &phase) {
            Admitted::Room => {}
            Admitted::InPlaceOfAnother => evicted.happened(),
            Admitted::Full => {
                refused.happened();
                continue;
            }
        }
        let (served, web, handler) = (
            Arc::clone(&connections),
            Arc::clone(&web),
            Arc::clone(&handler),
        );
        let spawned = thread::Builder::new()
            .name("http".to_owned())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                answer(&stream, &phase, &web, handler.as_ref());
                served.close(id);
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start a thread for a connection");
            connections.close(id);
        }
    }
}

/// Reads one request head (after the TLS handshake, with TLS), admits
/// it (with auth), answers it, closes the connection.
fn answer(
    stream: &TcpStream,
    phase: &Phase,
    web: &Live,
    handler: &(dyn Fn(&str) -> Response + Sync),
) {
    let deadline = Instant::now() + HEAD_DEADLINE;
    let web = match web.current() {
        Ok(web) => web,
        // Logged where it was read; the client learns nothing more (and
        // a TLS client not even that).
        Err(_) => {
            let response = Response::text(500, "the web config cannot be served: see the log\n");
            if send(&mut Channel::Plain(stream), &response, true, false, "").is_ok() {
                linger(stream, phase);
            }
            return;
        }
    };
    let mut channel = match &web.tls {
        None => Channel::Plain(stream),
        Some(config) => match first_byte(stream, phase, deadline) {
            None => return,
            // Plain HTTP to the TLS port (a request line starts with a
            // letter, a TLS record with 0x16): told so in plain HTTP, as
            // Go's servers do; it learns nothing else.
            Some(byte) if byte.is_ascii_alphabetic() => {
                let response = Response::text(
                    400,
                    "Client sent an HTTP request to an HTTPS server: use https://\n",
                );
                phase.set(Phase::ANSWER);
                if send(&mut Channel::Plain(stream), &response, true, false, "").is_ok() {
                    linger(stream, phase);
                }
                return;
            }
            Some(_) => match ServerConnection::new(Arc::clone(config)) {
                Ok(connection) => Channel::Tls(Box::new(connection), stream),
                Err(error) => {
                    tracing::warn!(%error, "cannot start a TLS connection");
                    return;
                }
            },
        },
    };
    let (response, send_body, gzip_ok) = match read_head(&mut channel, phase, deadline) {
        Ok(request) => {
            phase.set(Phase::ANSWER);
            match admit(&web, &request, deadline) {
                Ok(()) => (handler(&request.path), !request.head_only, request.gzip),
                Err(refused) => (refused, !request.head_only, false),
            }
        }
        Err(Refused::Closed) => return,
        Err(Refused::Status(status, why)) => {
            (Response::text(status, format!("{why}\n")), true, false)
        }
    };
    phase.set(Phase::ANSWER);
    if send(&mut channel, &response, send_body, gzip_ok, &web.headers).is_ok() {
        linger(stream, phase);
    }
}

/// `Ok` when `web` asks for no password or `request` carries a right one;
/// else the answer: 401 (which names the scheme) or 503.
fn admit(web: &WebConfig, request: &Request, deadline: Instant) -> Result<(), Response> {
    let Some(auth) = &web.auth else {
        return Ok(());
    };
    let unauthorized = || Response::text(401, "Unauthorized\n");
    let Some((user, password)) = &request.credentials else {
        return Err(unauthorized());
    };
    auth.check(user, password, deadline)
        .map_err(|denied| match denied {
            Denied::Unauthorized => unauthorized(),
            Denied::Busy => Response::text(503, "password checks are busy: try again\n"),
        })
}

/// Writes the answer (its body unless `send_body` is false; gzipped where
/// the handler has it so and `gzip_ok`) and ends the connection's sending
/// side.
fn send(
    channel: &mut Channel,
    response: &Response,
    send_body: bool,
    gzip_ok: bool,
    headers: &str,
) -> io::Result<()> {
    channel.stream().set_write_timeout(Some(WRITE_TIMEOUT))?;
    let reason = match response.status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    };
    let status_header = match response.status {
        401 => "WWW-Authenticate: Basic\r\n",
        405 => "Allow: GET, HEAD\r\n",
        _ => "",
    };
    let (body, encoding) = match &response.gzip {
        Some(gzip) if gzip_ok => (
            &gzip[..],
            "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n",
        ),
        Some(_) => (response.body.as_bytes(), "Vary: Accept-Encoding\r\n"),
        None => (response.body.as_bytes(), ""),
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{encoding}{status_header}{headers}Connection: close\r\n\r\n",
        response.status,
        response.content_type,
        body.len()
    );
    let body = if send_body { body } else { b"" };
    channel.write_all(head.as_bytes())?;
    channel.write_all(body)?;
    channel.finish()
}

/// Waits (until `deadline`) for the TLS client's first byte, leaving it
/// to be read; `None` when the client closes or sends nothing in time.
fn first_byte(stream: &TcpStream, phase: &Phase, deadline: Instant) -> Option<u8> {
    let mut byte = [0u8];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return None;
        }
        match stream.peek(&mut byte) {
            Ok(0) => return None,
            Ok(_) => {
                phase.set(Phase::HANDSHAKE);
                return Some(byte[0]);
            }
            Err(error) if is_retry(&error) => {}
            Err(_) => return None,
        }
    }
}

/// A read that ended without data nor a real error: a timeout (the
/// deadline decides), a signal.
fn is_retry(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// A connection's bytes: as they come, or through TLS. rustls is driven
/// here, record by record, rather than through its blocking `Stream`,
/// whose one `read` may wait for many: each wait on the socket is cut at
/// the deadline.
enum Channel<'a> {
    Plain(&'a TcpStream),
    Tls(Box<ServerConnection>, &'a TcpStream),
}

impl Channel<'_> {
    /// Some bytes of the request (0: the client is done), waiting no
    /// later than `deadline`: past it, `TimedOut`.
    fn read_until(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
        phase: &Phase,
    ) -> io::Result<usize> {
        // Reads, and the handshake's writes, wait until the deadline.
        let wait = |stream: &TcpStream| {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::from(ErrorKind::TimedOut));
            }
            stream.set_read_timeout(Some(left))?;
            stream.set_write_timeout(Some(left))
        };
        match self {
            Channel::Plain(stream) => {
                wait(stream)?;
                let n = { stream }.read(buf)?;
                if n > 0 {
                    phase.set(Phase::HEAD);
                }
                Ok(n)
            }
            Channel::Tls(connection, stream) => loop {
                match connection.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                    Err(error) => return Err(error),
                }
                wait(stream)?;
                // The handshake's answers, before waiting for more.
                flush_tls(connection, stream)?;
                if connection.read_tls(&mut { *stream })? == 0 {
                    return Ok(0);
                }
                if let Err(error) = connection.process_new_packets() {
                    // The alert that says why, if the client still reads.
                    let _ = flush_tls(connection, stream);
                    return Err(io::Error::new(ErrorKind::InvalidData, error));
                }
                if !connection.is_handshaking() {
                    phase.set(Phase::HEAD);
                }
            },
        }
    }

    fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        match self {
            Channel::Plain(stream) => { *stream }.write_all(bytes),
            Channel::Tls(connection, stream) => {
                // rustls holds a bounded amount of plaintext: encrypted
                // and sent as it fills.
                while !bytes.is_empty() {
                    let taken = connection.writer().write(bytes)?;
                    bytes = &bytes[taken..];
                    flush_tls(connection, stream)?;
                }
                Ok(())
            }
        }
    }

    fn stream(&self) -> &TcpStream {
        match self {
            Channel::Plain(stream) | Channel::Tls(_, stream) => stream,
        }
    }

    /// Ends the sending side: TLS's close_notify, then TCP's FIN.
    fn finish(&mut self) -> io::Result<()> {
        let stream = match self {
            Channel::Plain(stream) => stream,
            Channel::Tls(connection, stream) => {
                connection.send_close_notify();
                flush_tls(connection, stream)?;
                stream
            }
        };
        stream.shutdown(Shutdown::Write)
    }
}

/// Sends whatever TLS records rustls has ready (within the socket's write
/// timeout).
fn flush_tls(connection: &mut ServerConnection, mut stream: &TcpStream) -> io::Result<()> {
    while connection.wants_write() {
        connection.write_tls(&mut stream)?;
    }
    Ok(())
}

/// Reads what the client still sends (the rest of a refused request) for
/// a moment before closing: closing a socket with unread input makes the
/// kernel reset the connection, and the client may lose the answer.
fn linger(mut stream: &TcpStream, phase: &Phase) {
    phase.set(Phase::LINGER);
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

#[derive(Debug, PartialEq)]
enum Refused {
    /// The client went away or sent nothing in time: nothing to answer.
    Closed,
    Status(u16, &'static str),
}

/// What routing needs of a request.
#[derive(Debug, PartialEq)]
struct Request {
    /// HEAD: the answer's head alone.
    head_only: bool,
    /// Without query string.
    path: String,
    /// User and password of an `Authorization: Basic` header.
    credentials: Option<(String, Vec<u8>)>,
    /// Whether `Accept-Encoding` takes gzip.
    gzip: bool,
}

/// Reads until the bytes so far parse as a whole request head (within the
/// size limit and the deadline) or cannot become one.
fn read_head(channel: &mut Channel, phase: &Phase, deadline: Instant) -> Result<Request, Refused> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        // One byte past the limit at most: enough to know it is past.
        let room = (MAX_HEAD_BYTES + 1 - head.len()).min(chunk.len());
        match channel.read_until(&mut chunk[..room], deadline, phase) {
            Ok(0) => return Err(Refused::Closed),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(error) if is_retry(&error) => {
                if Instant::now() >= deadline {
                    return Err(if head.is_empty() {
                        Refused::Closed
                    } else {
                        Refused::Status(408, "the request head did not arrive in time")
                    });
                }
            }
            Err(_) => return Err(Refused::Closed),
        }
        if let Some(request) = parse_head(&head)? {
            return Ok(request);
        }
    }
}

/// The request in `bytes` once its head is whole (`None` before); line
/// ends CRLF or bare LF, as `httparse` reads them. GET and HEAD of a path
/// or of an absolute URI; nothing else.
fn parse_head(bytes: &[u8]) -> Result<Option<Request>, Refused> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(length)) if length <= MAX_HEAD_BYTES => {}
        Ok(httparse::Status::Partial) if bytes.len() <= MAX_HEAD_BYTES => return Ok(None),
        Ok(_) => return Err(Refused::Status(431, "the request head is too large")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refused::Status(431, "too many header lines"));
        }
        Err(_) => return Err(Refused::Status(400, "malformed request")),
    }
    let head_only = match request.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => {
            return Err(Refused::Status(
                405,
                "only GET and HEAD are served: no action is taken over HTTP",
            ));
        }
    };
    let credentials = request
        .headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case("authorization"))
        .and_then(|header| basic_credentials(header.value));
    Ok(Some(Request {
        head_only,
        path: path_of(request.path.unwrap_or("/")).to_owned(),
        credentials,
        gzip: request.headers.iter().any(|header| {
            header.name.eq_ignore_ascii_case("accept-encoding")
                && std::str::from_utf8(header.value).is_ok_and(takes_gzip)
        }),
    }))
}

/// User and password of a `Basic` authorization (RFC 7617): base64 of
/// `user:password`, the user without a colon; `None` for another scheme
/// or a malformed value (which no user's password matches).
fn basic_credentials(value: &[u8]) -> Option<(String, Vec<u8>)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// Whether an `Accept-Encoding` value takes gzip: listed (or `x-gzip`)
/// with no `q=0`. `*` is not taken for gzip: a client that names no
/// coding gets the plain text.
fn takes_gzip(value: &str) -> bool {
    value.split(',').any(|coding| {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or("").trim();
        let weight = parts
            .filter_map(|param| param.trim().strip_prefix("q="))
            .map(|q| q.trim().parse::<f64>().unwrap_or(0.0))
            .next()
            .unwrap_or(1.0);
        (name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip")) && weight > 0.0
    })
}

/// The path of a request target: origin form (`/metrics?x`) or absolute
/// form (`http://host/metrics`, as sent to a proxy); the query string
/// chooses nothing here.
fn path_of(target: &str) -> &str {
    let after_authority = match target.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            &rest[rest.find(['/', '?']).unwrap_or(rest.len())..]
        }
        _ => target,
    };
    match after_authority
        .split_once('?')
        .map_or(after_authority, |(path, _)| path)
    {
        "" => "/",
        path => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &str) -> Result<Option<Request>, Refused> {
        parse_head(head.as_bytes())
    }

    fn get(path: &str) -> Result<Option<Request>, Refused> {
        Ok(Some(Request {
            head_only: false,
            path: path.to_owned(),
            credentials: None,
            gzip: false,
        }))
    }

    fn status(head: &str) -> u16 {
        match parse(head) {
            Err(Refused::Status(status, _)) => status,
            other => panic!("{head:?}: {other:?}"),
        }
    }

    #[test]
    fn gets_and_heads_of_a_path_and_nothing_else() {
        assert_eq!(
            parse("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            get("/metrics")
        );
        assert_eq!(
            parse("HEAD /healthz HTTP/1.1\r\n\r\n"),
            Ok(Some(Request {
                head_only: true,
                path: "/healthz".to_owned(),
                credentials: None,
                gzip: false,
            }))
        );
        assert_eq!(status("POST /metrics HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status("GARBAGE\r\n\r\n"), 400);
        assert_eq!(status("GET /x HTTP/1.1\r\nBad Header\r\n\r\n"), 400);
    }

    /// RFC 7617: the scheme in any case, the user up to the first colon,
    /// the password the rest (colons and all, any bytes); anything else
    /// carries no credentials.
    #[test]
    fn basic_credentials_are_read_as_rfc_7617_has_them() {
        let encode = |text: &[u8]| base64::engine::general_purpose::STANDARD.encode(text);
        let read = |value: String| basic_credentials(value.as_bytes());
        let pair = |user: &str, password: &[u8]| Some((user.to_owned(), password.to_vec()));
        assert_eq!(
            read(format!("Basic {}", encode(b"prometheus:pw"))),
            pair("prometheus", b"pw")
        );
        assert_eq!(
            read(format!("bAsIc  {} ", encode(b"a:b:c"))),
            pair("a", b"b:c")
        );
        assert_eq!(
            read(format!("Basic {}", encode(b"a:\xff\x00"))),
            pair("a", b"\xff\x00")
        );
        assert_eq!(read(format!("Basic {}", encode(b"a:"))), pair("a", b""));
        assert_eq!(read(format!("Basic {}", encode(b"no colon"))), None);
        assert_eq!(read(format!("Basic {}", encode(b"\xff:pw"))), None);
        assert_eq!(read(format!("Bearer {}", encode(b"a:b"))), None);
        assert_eq!(read("Basic not base64!".to_owned()), None);
        assert_eq!(read("Basic".to_owned()), None);
        let request = "GET /metrics HTTP/1.1\r\nauthorization: Basic YTpi\r\n\r\n";
        assert_eq!(
            parse(request).unwrap().unwrap().credentials,
            pair("a", b"b")
        );
    }

    #[test]
    fn absolute_targets_are_routed_by_their_path() {
        assert_eq!(
            parse("GET http://h:9177/metrics HTTP/1.1\r\n\r\n"),
            get("/metrics")
        );
        assert_eq!(
            parse("GET HTTPS://h/healthz?a HTTP/1.1\r\n\r\n"),
            get("/healthz")
        );
        assert_eq!(parse("GET http://h HTTP/1.1\r\n\r\n"), get("/"));
        assert_eq!(parse("GET http://h?x=/metrics HTTP/1.1\r\n\r\n"), get("/"));
    }

    /// A head is whole at its blank line, whichever line ends it uses;
    /// before that it is awaited.
    #[test]
    fn bare_lf_heads_are_whole_at_their_blank_line() {
        assert_eq!(parse("GET /metrics HTTP/1.1\nHost: a\n\n"), get("/metrics"));
        assert_eq!(
            parse("GET /metrics HTTP/1.1\r\nHost: a\n\r\n"),
            get("/metrics")
        );
        assert_eq!(parse("GET /metrics HTTP/1.1\nHost: a\n"), Ok(None));
        assert_eq!(parse("GET /metrics HTTP/1.1\r\nHost: a\r\n"), Ok(None));
    }

    #[test]
    fn the_head_limit_is_exact_and_header_lines_are_counted() {
        let of_size = |size: usize| {
            let (start, end) = ("GET /metrics HTTP/1.1\r\nX-Pad: ", "\r\n\r\n");
            format!("{start}{}{end}", "a".repeat(size - start.len() - end.len()))
        };
        assert_eq!(parse(&of_size(MAX_HEAD_BYTES)), get("/metrics"));
        assert_eq!(status(&of_size(MAX_HEAD_BYTES + 1)), 431);
        // Not yet whole, already too long.
        assert_eq!(
            status(&of_size(MAX_HEAD_BYTES + 2)[..MAX_HEAD_BYTES + 1]),
            431
        );
        let lines = |n: usize| -> String { (0..n).map(|i| format!("X-{i}: y\r\n")).collect() };
        let with = |n: usize| format!("GET /metrics HTTP/1.1\r\n{}\r\n", lines(n));
        assert_eq!(parse(&with(MAX_HEADERS)), get("/metrics"));
        assert_eq!(status(&with(MAX_HEADERS + 1)), 431);
        // Counted as they come: refused before the head is whole.
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\n{}", lines(MAX_HEADERS + 1))),
            431
        );
    }

    /// Room is made by closing the oldest connection of the first kind
    /// there is: silent, half-open TLS, an unfinished head, answered and
    /// lingering; never one being answered.
    #[test]
    fn room_is_made_from_the_oldest_connection_not_being_answered() {
        let (silent, handshake, head, answer, linger) = (
            Phase::SILENT,
            Phase::HANDSHAKE,
            Phase::HEAD,
            Phase::ANSWER,
            Phase::LINGER,
        );
        let close = |phases: &[u8]| to_close(phases.iter().copied());
        assert_eq!(close(&[linger, head, handshake, silent, answer]), Some(3));
        assert_eq!(close(&[head, handshake, silent, silent]), Some(2));
        assert_eq!(
            close(&[answer, linger, head, handshake, handshake]),
            Some(3)
        );
        assert_eq!(close(&[answer, linger, head, head]), Some(2));
        assert_eq!(close(&[answer, linger, linger]), Some(1));
        assert_eq!(close(&[answer, answer]), None);
        assert_eq!(close(&[]), None);
    }

    /// What Prometheus sends (`gzip`), and the ways of saying no.
    #[test]
    fn gzip_is_taken_where_the_client_lists_it() {
        let gzip = |value: &str| {
            parse(&format!(
                "GET /metrics HTTP/1.1\r\nAccept-Encoding: {value}\r\n\r\n"
            ))
            .unwrap()
            .unwrap()
            .gzip
        };
        assert!(gzip("gzip"));
        assert!(gzip("deflate, GZIP;q=0.5"));
        assert!(gzip("x-gzip"));
        assert!(!gzip("gzip;q=0"));
        assert!(!gzip("gzip; q=0.0, identity"));
        assert!(!gzip("identity"));
        assert!(!gzip("*"));
        assert!(!gzip("gzipx"));
        let plain = parse("GET /metrics HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert!(!plain.gzip);
    }
}
