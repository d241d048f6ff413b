//! `exbind serve`.

use std::io::Write;
use std::sync::Arc;

use exbind_server::{clock::SystemClock, listen, ServeArgs, Server};
use tracing_subscriber::EnvFilter;

pub fn run(args: ServeArgs) -> i32 {
    let (writer, _flush_guard) = crate::logwriter::stderr();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(writer)
        .event_format(crate::logformat::LineFormat)
        .init();
    raise_open_file_limit(args.max_connections);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("exbind: cannot start the runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(async {
        let server = match Server::start(&args, Arc::new(SystemClock)).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("exbind: {}", e.message);
                return e.exit_code;
            }
        };
        let listener = match listen(&args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("exbind: cannot listen on {}: {e}", args.listen);
                return 1;
            }
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("exbind: cannot read the listening address: {e}");
                return 1;
            }
        };
        if !addr.ip().is_loopback() {
            eprintln!(
                "exbind: warning: listening on {addr}, which is not a loopback address: the \
                 Feishu API and the control plane are reachable from the network"
            );
        }
        // Handlers go in before the banner, so a signal right after it stops us cleanly.
        let shutdown = match shutdown_signal() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("exbind: cannot handle signals: {e}");
                return 1;
            }
        };
        let mut out = std::io::stdout().lock();
        for line in server.banner(addr).await {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
        drop(out);
        server.serve(listener, shutdown).await;
        tracing::info!("stopped");
        0
    })
}

/// Each connection is a file descriptor: lifts the soft limit on open files to the hard
/// one (often 1024 → far more), and says so when even that is below `--max-connections`.
fn raise_open_file_limit(max_connections: u32) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    let have = getrlimit(Resource::Nofile).current;
    // A few dozen for the store, the logs and the runtime.
    if let Some(n) = have.filter(|n| *n < u64::from(max_connections) + 64) {
        eprintln!(
            "exbind: warning: the open-file limit ({n}) is below --max-connections \
             ({max_connections}); connections beyond it wait until others close"
        );
    }
}

/// Resolves on SIGINT or SIGTERM; both handlers are installed when this returns.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}
