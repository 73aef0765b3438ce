//! Accepting connections (plain HTTP or TLS with a plain-HTTP redirector), serving HTTP/1.1
//! and HTTP/2, graceful shutdown and listener hand-over for reloads.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, HOST, LOCATION};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssl::ssl::Ssl;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio_openssl::SslStream;

use crate::handler::{handle_request, ServerConfig};
use crate::router::full_body;
use crate::tls::{detect_tls, TlsAcceptorHandle};
use crate::Body;

/// TLS handshakes must complete within this time.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keep-alive idle time.
const TCP_KEEPALIVE_SECS: libc::c_int = 120;

/// How connections on the listening socket are spoken to.
#[derive(Clone)]
pub enum Transport {
    /// Plain HTTP (the API daemon on `127.0.0.1:82`).
    Plain,
    /// TLS; clients sending plain HTTP get a redirect to `https://`.
    Tls(TlsAcceptorHandle),
}

/// Counts open connections and wakes waiters when the last one closes.
#[derive(Default)]
struct ConnectionTracker {
    open: AtomicUsize,
    idle: Notify,
}

struct ConnectionGuard(Arc<ConnectionTracker>);

impl ConnectionTracker {
    fn enter(self: &Arc<Self>) -> ConnectionGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        ConnectionGuard(Arc::clone(self))
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Controls a running server; dropping it leaves the server running.
pub struct ServerHandle {
    local_addr: SocketAddr,
    stop_accepting: Option<oneshot::Sender<()>>,
    accept_task: Option<JoinHandle<TcpListener>>,
    finish_connections: watch::Sender<bool>,
    tracker: Arc<ConnectionTracker>,
}

/// Starts serving `listener` with `config`; returns immediately.
pub fn spawn_server(
    listener: TcpListener,
    transport: Transport,
    config: ServerConfig,
) -> std::io::Result<ServerHandle> {
    let local_addr = listener.local_addr()?;
    let config = Arc::new(config);
    let (stop_tx, stop_rx) = oneshot::channel();
    let (finish_tx, finish_rx) = watch::channel(false);
    let tracker = Arc::new(ConnectionTracker::default());
    let accept_task = tokio::spawn(accept_loop(
        listener,
        transport,
        config,
        stop_rx,
        finish_rx,
        Arc::clone(&tracker),
    ));
    Ok(ServerHandle {
        local_addr,
        stop_accepting: Some(stop_tx),
        accept_task: Some(accept_task),
        finish_connections: finish_tx,
        tracker,
    })
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Number of currently open connections.
    pub fn open_connections(&self) -> usize {
        self.tracker.open.load(Ordering::SeqCst)
    }

    async fn stop_accept_loop(&mut self) -> Option<TcpListener> {
        if let Some(stop) = self.stop_accepting.take() {
            let _ = stop.send(());
        }
        match self.accept_task.take() {
            Some(task) => task.await.ok(),
            None => None,
        }
    }

    /// Stops accepting and hands the listening socket back (for a new server in this
    /// process, or exported to a re-executed process). Open connections finish their
    /// in-flight requests and are then closed; [`ServerHandle::wait_connections`] waits
    /// for that.
    pub async fn hand_over_listener(&mut self) -> std::io::Result<std::net::TcpListener> {
        let listener = self.stop_accept_loop().await.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "listener already handed over")
        })?;
        let _ = self.finish_connections.send(true);
        listener.into_std()
    }

    /// Waits until every connection of this server is closed.
    pub async fn wait_connections(&self) {
        self.tracker.wait_idle().await;
    }

    /// Graceful shutdown: stop accepting, let in-flight requests finish, close idle
    /// keep-alive connections and wait for all of them. Upgraded connections (backup/reader
    /// sessions) belong to their handlers and are not waited for.
    pub async fn shutdown(mut self) {
        drop(self.stop_accept_loop().await);
        let _ = self.finish_connections.send(true);
        self.tracker.wait_idle().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    transport: Transport,
    config: Arc<ServerConfig>,
    mut stop: oneshot::Receiver<()>,
    finish: watch::Receiver<bool>,
    tracker: Arc<ConnectionTracker>,
) -> TcpListener {
    // A dropped handle detaches the server: it keeps serving.
    let mut detached = false;
    loop {
        let accepted = tokio::select! {
            stopped = &mut stop, if !detached => {
                if stopped.is_ok() {
                    break;
                }
                detached = true;
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let guard = tracker.enter();
                let transport = transport.clone();
                let config = Arc::clone(&config);
                let finish = finish.clone();
                tokio::spawn(async move {
                    serve_connection(stream, peer, transport, config, finish).await;
                    drop(guard);
                });
            }
            // Out of file descriptors and similar: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    listener
}

fn set_tcp_options(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let on: libc::c_int = 1;
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: fd is a valid socket owned by `stream`; option values point to c_ints.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_KEEPALIVE,
            &on as *const libc::c_int as *const libc::c_void,
            len,
        );
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_KEEPIDLE,
            &TCP_KEEPALIVE_SECS as *const libc::c_int as *const libc::c_void,
            len,
        );
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    transport: Transport,
    config: Arc<ServerConfig>,
    finish: watch::Receiver<bool>,
) {
    set_tcp_options(&stream);
    match transport {
        Transport::Plain => serve_http(TokioIo::new(stream), peer, config, finish).await,
        Transport::Tls(acceptor) => {
            match detect_tls(&stream).await {
                Ok(true) => {}
                Ok(false) => return serve_redirect(stream, finish).await,
                Err(_) => return,
            }
            let Ok(acceptor) = acceptor.current() else {
                return;
            };
            let Ok(ssl) = Ssl::new(acceptor.context()) else {
                return;
            };
            let Ok(mut tls) = SslStream::new(ssl, stream) else {
                return;
            };
            let handshake =
                tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, std::pin::Pin::new(&mut tls).accept())
                    .await;
            if !matches!(handshake, Ok(Ok(()))) {
                return;
            }
            serve_http(TokioIo::new(tls), peer, config, finish).await
        }
    }
}

async fn wait_finish(mut finish: watch::Receiver<bool>) {
    if finish.wait_for(|stop| *stop).await.is_err() {
        // The handle was dropped without shutdown: keep serving.
        std::future::pending::<()>().await;
    }
}

async fn serve_http<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    config: Arc<ServerConfig>,
    finish: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let config = Arc::clone(&config);
        async move { Ok::<_, Infallible>(handle_request(config, req, peer).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection_with_upgrades(io, service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = wait_finish(finish) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// The answer of the plain-HTTP redirector on the TLS port.
pub fn redirect_response(method: &Method, host: Option<&HeaderValue>) -> Response<Body> {
    let mut response = Response::new(full_body(""));
    let location = host
        .and_then(|h| h.to_str().ok())
        .and_then(|h| HeaderValue::from_str(&format!("https://{h}")).ok());
    match location {
        Some(location) => {
            *response.status_mut() = if *method == Method::GET || *method == Method::HEAD {
                StatusCode::MOVED_PERMANENTLY
            } else {
                StatusCode::PERMANENT_REDIRECT
            };
            response.headers_mut().insert(LOCATION, location);
        }
        None => *response.status_mut() = StatusCode::BAD_REQUEST,
    }
    response
}

async fn serve_redirect(stream: TcpStream, finish: watch::Receiver<bool>) {
    let service = service_fn(|req: Request<Incoming>| async move {
        Ok::<_, Infallible>(redirect_response(req.method(), req.headers().get(HOST)))
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = wait_finish(finish) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}
