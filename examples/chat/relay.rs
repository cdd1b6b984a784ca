//! `chat relay`: a relay server until Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::CliResult;

pub(crate) async fn relay(
    listen: &str,
    db: &std::path::Path,
    tls_files: Option<(PathBuf, PathBuf)>,
) -> CliResult<ExitCode> {
    use sotto::relay::{BlobStorage, Server, ServerConfig, SqliteStore};
    // The certificate first: a mistake there should not leave a database.
    let tls = match &tls_files {
        Some((cert, key)) => {
            let read = |path: &PathBuf| {
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
            };
            Some(
                sotto::relay::tls::server_config(&read(cert)?, &read(key)?)
                    .map_err(|e| format!("TLS certificate or key: {e}"))?,
            )
        }
        None => None,
    };
    let created = !db.exists();
    let store = SqliteStore::open(db).map_err(|e| format!("cannot open {}: {e}", db.display()))?;
    // Attachments next to the database, as the relay binary keeps them.
    let mut blob_dir = db.as_os_str().to_owned();
    blob_dir.push(".blobs");
    let blob_dir = PathBuf::from(blob_dir);
    let config = ServerConfig {
        blobs: BlobStorage::dir(&blob_dir)
            .map_err(|e| format!("cannot open {}: {e}", blob_dir.display()))?,
        ..ServerConfig::default()
    };
    let server = match Server::bind(listen, config, Arc::new(store)).await {
        Ok(server) => server,
        Err(e) => {
            // A relay that could not start leaves no new database behind.
            if created {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = db.as_os_str().to_owned();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
                let _ = std::fs::remove_dir(&blob_dir);
            }
            return Err(format!("cannot listen on {listen}: {e}"));
        }
    };
    let addr = server.local_addr();
    let (server, how) = match tls {
        Some(config) => (server.with_tls(config), "TLS"),
        None => (server, "plain TCP"),
    };
    let handle = server.spawn();
    println!(
        "Relay listening on {addr} ({how}, database {}). Ctrl-C stops it.",
        db.display()
    );
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("cannot wait for Ctrl-C: {e}"))?;
    handle.shutdown().await;
    println!("Relay stopped.");
    Ok(ExitCode::SUCCESS)
}
