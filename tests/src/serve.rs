//! How every test double serves: on its own thread and tokio runtime, so it keeps answering while
//! a test blocks (sync tests, `std::process::Command::output`), with `TCP_NODELAY` on accepted
//! connections (streamed answers go out as small writes that must not wait for delayed ACKs),
//! until `stop` turns true.

use std::net::SocketAddr;

use tokio::sync::watch;

/// Serves `app` on `listener` (already bound, non-blocking) from a new thread named `name`.
fn spawn(
    name: &str,
    listener: std::net::TcpListener,
    app: axum::Router,
    worker_threads: usize,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .thread_name(name)
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|v| *v).await;
                });
                let _ = server.await;
            });
            runtime.shutdown_background();
        })?;
    Ok(())
}

/// A double's listener, bound (non-blocking) but not yet served, and the switch that will stop
/// it. The double builds its state in between, with [`Bound::stop_signal`] for answers that
/// must end when the server stops.
pub(crate) struct Bound {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
}

impl Bound {
    /// Binds `127.0.0.1:0`.
    pub(crate) fn loopback() -> std::io::Result<Bound> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<Bound> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (shutdown, _) = watch::channel(false);
        Ok(Bound {
            listener,
            addr,
            shutdown,
        })
    }

    /// Turns true when the server stops.
    pub(crate) fn stop_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Serves every request with `handler` (an axum fallback) and `state`, from a thread named
    /// `name` with `worker_threads` workers.
    pub(crate) fn serve<H, T, S>(
        self,
        name: &str,
        worker_threads: usize,
        handler: H,
        state: S,
    ) -> std::io::Result<Running>
    where
        H: axum::handler::Handler<T, S>,
        T: 'static,
        S: Clone + Send + Sync + 'static,
    {
        let app = axum::Router::new().fallback(handler).with_state(state);
        let stop = self.stop_signal();
        spawn(name, self.listener, app, worker_threads, stop)?;
        Ok(Running {
            addr: self.addr,
            base_url: format!("http://{}", self.addr),
            shutdown: self.shutdown,
        })
    }
}

/// A serving double's address; dropping it stops the server.
pub(crate) struct Running {
    addr: SocketAddr,
    base_url: String,
    shutdown: watch::Sender<bool>,
}

impl Running {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The `Debug` of the double `name` that owns this server.
    pub(crate) fn debug(&self, f: &mut std::fmt::Formatter<'_>, name: &str) -> std::fmt::Result {
        f.debug_struct(name)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
