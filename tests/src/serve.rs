//! How every test double serves: on its own thread and tokio runtime, so it keeps answering while
//! a test blocks (sync tests, `std::process::Command::output`), with `TCP_NODELAY` on accepted
//! connections (streamed answers go out as small writes that must not wait for delayed ACKs),
//! until `stop` turns true.

use tokio::sync::watch;

/// Serves `app` on `listener` (already bound, non-blocking) from a new thread named `name`.
pub(crate) fn spawn(
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
