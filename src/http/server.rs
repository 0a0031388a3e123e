//! The connection loop: accepts TCP connections, completes the TLS handshake when TLS is
//! on, and serves HTTP/1.1 and HTTP/2 on each with header limits and timeouts, until a
//! shutdown signal.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// The maximum number of header fields in one HTTP/1.1 request.
const MAX_HEADERS: usize = 100;
/// How long the loop pauses after a failed accept, such as one for too many open files.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Limits applied to every connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// The largest total size of the request line and headers, in bytes.
    pub max_header_bytes: usize,
    /// How long a client has for the TLS handshake and for each request's headers.
    pub request_timeout: Duration,
}

/// Accepts connections on `listener` and serves `app` on each until `shutdown`
/// resolves, then waits up to `drain` for the open requests to finish.
pub async fn run(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let builder = Arc::new(http_builder(limits));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = Connection {
            builder: builder.clone(),
            app: app.clone(),
            tls: tls.clone(),
            limits,
            watcher: graceful.watcher(),
        };
        tokio::spawn(connection.serve(stream));
    }
    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "shutdown requested; finishing open requests"
    );
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            drain_ms = drain.as_millis() as u64,
            "open requests did not finish in time; closing their connections"
        );
    }
}

// NOTE: hyper itself rejects oversized headers (431 over HTTP/1.1) and slow headers,
// so those responses carry no `{error: {code, message}}` body.
fn http_builder(limits: ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.request_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// One accepted connection and what it needs to be served.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    watcher: Watcher,
}

impl Connection {
    async fn serve(self, stream: TcpStream) {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let Some(acceptor) = self.tls.clone() else {
            self.serve_http(stream).await;
            return;
        };
        let handshake = acceptor.accept(stream);
        match tokio::time::timeout(self.limits.request_timeout, handshake).await {
            Ok(Ok(stream)) => self.serve_http(stream).await,
            // Scanners and clients that do not trust the certificate end here; debug level
            // keeps them out of the normal log.
            Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
    }

    async fn serve_http<S>(self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = TowerToHyperService::new(self.app);
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service);
        if let Err(error) = self.watcher.watch(connection).await {
            tracing::debug!(error = %error, "connection closed with an error");
        }
    }
}
