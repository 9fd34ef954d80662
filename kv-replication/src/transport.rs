//! Transports: byte streams between a primary and its replicas.
//!
//! The protocol needs only a reliable, ordered byte stream that can be cloned (one
//! thread reads while another writes), given a read timeout, and shut down from any
//! thread. [`TcpConnector`]/[`TcpListener`] provide it over TCP with the standard
//! library's blocking sockets; [`mem_network`] provides it in memory for tests.
//!
//! Why blocking std I/O and threads rather than an async runtime: a primary serves a
//! handful of replicas, each session is two threads that spend their time in `read`
//! or waiting for new log data; a runtime would add a large dependency and nothing a
//! handful of threads cannot do. The engine it feeds is itself thread-based.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A connected, reliable, ordered byte stream.
pub trait Stream: Read + Write + Send {
    /// Another handle on the same stream (one thread reads, another writes).
    fn try_clone_stream(&self) -> io::Result<Box<dyn Stream>>;
    /// Reads fail with `WouldBlock` or `TimedOut` after waiting this long (`None`: no
    /// limit). Applies to every handle of the stream.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Closes the stream both ways; blocked reads on any handle return.
    fn shutdown(&self);
    /// The peer's name, for errors and logs.
    fn peer(&self) -> String;
}

/// Opens streams to a primary.
pub trait Connector: Send + Sync {
    /// Connects, waiting at most `timeout`.
    fn connect(&self, timeout: Duration) -> io::Result<Box<dyn Stream>>;
    /// Where it connects to, for logs.
    fn describe(&self) -> String;
}

/// Accepts streams from replicas.
pub trait Listener: Send {
    /// The next incoming stream, or `None` if none arrived within `timeout`.
    fn accept(&self, timeout: Duration) -> io::Result<Option<Box<dyn Stream>>>;
    /// Where it listens, for logs.
    fn describe(&self) -> String;
}

impl Stream for TcpStream {
    fn try_clone_stream(&self) -> io::Result<Box<dyn Stream>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
    fn shutdown(&self) {
        let _ = TcpStream::shutdown(self, Shutdown::Both);
    }
    fn peer(&self) -> String {
        self.peer_addr()
            .map_or_else(|_| "tcp peer".into(), |a| a.to_string())
    }
}

/// Connects over TCP (with `TCP_NODELAY`: frames are flushed whole and latency
/// matters).
///
/// ```no_run
/// use kv_replication::{Connector, TcpConnector};
/// let c = TcpConnector::new("127.0.0.1:7070");
/// let stream = c.connect(std::time::Duration::from_secs(1))?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct TcpConnector {
    addr: String,
}

impl TcpConnector {
    /// A connector to `addr` (`host:port`).
    pub fn new(addr: impl Into<String>) -> Self {
        TcpConnector { addr: addr.into() }
    }
}

impl Connector for TcpConnector {
    fn connect(&self, timeout: Duration) -> io::Result<Box<dyn Stream>> {
        let mut last = io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} resolves to nothing", self.addr),
        );
        for addr in self.addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    return Ok(Box::new(s));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
    fn describe(&self) -> String {
        self.addr.clone()
    }
}

/// Listens on TCP.
#[derive(Debug)]
pub struct TcpListener {
    inner: std::net::TcpListener,
}

impl TcpListener {
    /// Binds `addr` (`host:port`; port 0 picks one, see [`TcpListener::local_addr`]).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        let inner = std::net::TcpListener::bind(addr)?;
        inner.set_nonblocking(true)?;
        Ok(TcpListener { inner })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

impl Listener for TcpListener {
    fn accept(&self, timeout: Duration) -> io::Result<Option<Box<dyn Stream>>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.inner.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false)?;
                    s.set_nodelay(true)?;
                    return Ok(Some(Box::new(s)));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        }
    }
    fn describe(&self) -> String {
        self.inner
            .local_addr()
            .map_or_else(|_| "tcp listener".into(), |a| a.to_string())
    }
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct PipeState {
    buf: VecDeque<u8>,
    closed: bool,
}

/// One direction of an in-memory stream.
#[derive(Debug, Default)]
struct Pipe {
    state: Mutex<PipeState>,
    cv: Condvar,
}

impl Pipe {
    fn close(&self) {
        relock(&self.state).closed = true;
        self.cv.notify_all();
    }
}

/// One end of an in-memory stream, from [`mem_pipe`] or [`mem_network`].
#[derive(Debug, Clone)]
pub struct MemStream {
    rx: Arc<Pipe>,
    tx: Arc<Pipe>,
    timeout: Arc<Mutex<Option<Duration>>>,
    name: String,
    /// Shared by this end's handles: the last one dropped closes the stream, as
    /// closing a socket's last descriptor does.
    handles: Arc<()>,
}

impl Drop for MemStream {
    fn drop(&mut self) {
        if Arc::strong_count(&self.handles) == 1 {
            self.rx.close();
            self.tx.close();
        }
    }
}

/// Two connected in-memory stream ends.
///
/// ```
/// use std::io::{Read, Write};
/// let (mut a, mut b) = kv_replication::mem_pipe("a", "b");
/// a.write_all(b"ping")?;
/// let mut buf = [0u8; 4];
/// b.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"ping");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn mem_pipe(a_name: &str, b_name: &str) -> (MemStream, MemStream) {
    let (ab, ba) = (Arc::new(Pipe::default()), Arc::new(Pipe::default()));
    let a = MemStream {
        rx: ba.clone(),
        tx: ab.clone(),
        timeout: Arc::default(),
        name: b_name.to_string(),
        handles: Arc::default(),
    };
    let b = MemStream {
        rx: ab,
        tx: ba,
        timeout: Arc::default(),
        name: a_name.to_string(),
        handles: Arc::default(),
    };
    (a, b)
}

impl Read for MemStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let timeout = *relock(&self.timeout);
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = relock(&self.rx.state);
        loop {
            if !st.buf.is_empty() {
                let n = buf.len().min(st.buf.len());
                for (dst, src) in buf.iter_mut().zip(st.buf.drain(..n)) {
                    *dst = src;
                }
                return Ok(n);
            }
            if st.closed {
                return Ok(0);
            }
            st = match deadline {
                None => self
                    .rx
                    .cv
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(io::Error::new(io::ErrorKind::WouldBlock, "read timed out"));
                    }
                    self.rx
                        .cv
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

impl Write for MemStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut st = relock(&self.tx.state);
        if st.closed {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "stream closed"));
        }
        st.buf.extend(buf);
        drop(st);
        self.tx.cv.notify_all();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for MemStream {
    fn try_clone_stream(&self) -> io::Result<Box<dyn Stream>> {
        Ok(Box::new(self.clone()))
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        *relock(&self.timeout) = timeout;
        Ok(())
    }
    fn shutdown(&self) {
        self.rx.close();
        self.tx.close();
    }
    fn peer(&self) -> String {
        self.name.clone()
    }
}

#[derive(Debug, Default)]
struct Backlog {
    incoming: Mutex<VecDeque<MemStream>>,
    cv: Condvar,
    closed: Mutex<bool>,
}

/// The listening end of an in-memory network, from [`mem_network`].
#[derive(Debug)]
pub struct MemListener {
    backlog: Arc<Backlog>,
}

/// The connecting end of an in-memory network, from [`mem_network`].
#[derive(Debug, Clone)]
pub struct MemConnector {
    backlog: Arc<Backlog>,
}

/// An in-memory "network" with one listener: what the connector connects reaches the
/// listener.
pub fn mem_network() -> (MemListener, MemConnector) {
    let backlog = Arc::new(Backlog::default());
    (
        MemListener {
            backlog: backlog.clone(),
        },
        MemConnector { backlog },
    )
}

impl Drop for MemListener {
    fn drop(&mut self) {
        *relock(&self.backlog.closed) = true;
    }
}

impl Listener for MemListener {
    fn accept(&self, timeout: Duration) -> io::Result<Option<Box<dyn Stream>>> {
        let q = relock(&self.backlog.incoming);
        let (mut q, _) = self
            .backlog
            .cv
            .wait_timeout_while(q, timeout, |q| q.is_empty())
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(q.pop_front().map(|s| Box::new(s) as Box<dyn Stream>))
    }
    fn describe(&self) -> String {
        "memory listener".into()
    }
}

impl Connector for MemConnector {
    fn connect(&self, _timeout: Duration) -> io::Result<Box<dyn Stream>> {
        if *relock(&self.backlog.closed) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "listener closed",
            ));
        }
        let (client, server) = mem_pipe("replica", "primary");
        relock(&self.backlog.incoming).push_back(server);
        self.backlog.cv.notify_all();
        Ok(Box::new(client))
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(mut a: Box<dyn Stream>, mut b: Box<dyn Stream>) {
        a.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        b.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let e = b.read(&mut buf).unwrap_err();
        assert!(matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
        // Shutting down from another handle wakes a blocked reader with EOF.
        b.set_read_timeout(None).unwrap();
        let closer = a.try_clone_stream().unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            closer.shutdown();
        });
        assert_eq!(b.read(&mut buf).unwrap(), 0);
        t.join().unwrap();
    }

    #[test]
    fn dropping_the_last_handle_closes_the_stream() {
        let (a, mut b) = mem_pipe("a", "b");
        let a2 = a.clone();
        drop(a);
        let mut w: Box<dyn Stream> = Box::new(a2);
        w.write_all(b"x").unwrap();
        drop(w);
        let mut buf = [0u8; 2];
        assert_eq!(
            b.read(&mut buf).unwrap(),
            1,
            "data written before the close arrives"
        );
        assert_eq!(b.read(&mut buf).unwrap(), 0, "then end of stream");
        assert!(b.write(b"y").is_err(), "the other way is closed too");
    }

    #[test]
    fn memory_streams_behave_like_sockets() {
        let (l, c) = mem_network();
        assert!(l.accept(Duration::from_millis(5)).unwrap().is_none());
        let a = c.connect(Duration::from_secs(1)).unwrap();
        let b = l.accept(Duration::from_secs(1)).unwrap().unwrap();
        exercise(a, b);
        drop(l);
        assert!(c.connect(Duration::from_secs(1)).is_err());
    }

    #[test]
    fn tcp_streams() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpConnector::new(l.local_addr().unwrap().to_string());
        let a = c.connect(Duration::from_secs(5)).unwrap();
        let b = l.accept(Duration::from_secs(5)).unwrap().unwrap();
        exercise(a, b);
    }
}
