//! Encryption at rest, backup, rekey and TLS, through the real `leadgate` binary.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::server::{DB_KEY, Server, get_lead, leadgate, open_db, post_lead};
use leadgate::store::{DbKey, Store};
use serde_json::json;

const PLANTED_NAME: &str = "Эльвира";
const PLANTED_SURNAME: &str = "Кудрявцева";
const PLANTED_PHONE: &str = "+7 917 555-12-34";
/// Forms of the planted phone that a readable file would hold.
const PHONE_FORMS: [&str; 3] = ["+79175551234", "9175551234", "555-12-34"];
const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Reads a database file and its WAL, if one is left, as the bytes on disk.
fn file_bytes(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let wal = path.with_extension("db-wal");
    if let Ok(more) = std::fs::read(wal) {
        bytes.extend(more);
    }
    bytes
}

fn assert_unreadable(bytes: &[u8], place: &str) {
    assert!(bytes.len() > 4096, "{place} is only {} bytes", bytes.len());
    assert!(
        !bytes.starts_with(SQLITE_MAGIC),
        "{place} starts with the plain SQLite header"
    );
    for value in [PLANTED_NAME, PLANTED_SURNAME, PLANTED_PHONE]
        .into_iter()
        .chain(PHONE_FORMS)
    {
        assert!(
            !contains(bytes, value.as_bytes()),
            "{place} holds a planted value in readable form"
        );
    }
}

/// Creates a migrated database with `key` and no model.
fn create_db(path: &Path, key: &DbKey) {
    drop(Store::open(path, key, Duration::from_secs(5)).unwrap());
}

fn passphrase(text: &str) -> DbKey {
    DbKey::Passphrase(text.to_string())
}

fn backup(db: &Path, target: &Path) -> Output {
    leadgate()
        .arg("backup")
        .arg("--db")
        .arg(db)
        .arg(target)
        .output()
        .unwrap()
}

fn assert_key_error(output: &Output, expected: &str, secret: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains(expected), "stderr: {stderr}");
    assert!(!stderr.contains(secret), "the error shows the key");
}

#[test]
fn files_hold_no_planted_values() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leads.db");
    let server = Server::start(&db, &["--wait-ms", "0"]);
    let lead = json!({
        "channel": "telegram",
        "external_id": "enc-1",
        "text": format!(
            "Добрый день, я {PLANTED_NAME} {PLANTED_SURNAME}, хочу записаться на чистку \
             зубов, телефон {PLANTED_PHONE}"
        ),
        "contact": { "name": format!("{PLANTED_NAME} {PLANTED_SURNAME}"), "phone": PLANTED_PHONE },
        "consent": { "granted": true },
    });
    let (status, body, _) = post_lead(&server, &lead);
    assert!(status == 201 || status == 202, "{status}: {body}");
    let id = body["lead_id"].as_i64().unwrap();

    // The backup runs while the server has the file open.
    let copy = dir.path().join("backup.db");
    let output = backup(&db, &copy);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["encrypted"], true);
    assert!(report["bytes"].as_u64().unwrap() > 0);
    let (status, _) = get_lead(&server, id);
    assert_eq!(status, 200);
    server.kill();

    assert_unreadable(&file_bytes(&db), "the database file");
    assert_unreadable(&std::fs::read(&copy).unwrap(), "the backup");
    // The values are stored, so their absence above comes from the encryption.
    for path in [&db, &copy] {
        let conn = open_db(path);
        let mapped: i64 = conn
            .query_row(
                "SELECT count(*) FROM redaction_mappings WHERE value = ?1",
                [PLANTED_PHONE],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(mapped, 1, "{} lacks the planted phone", path.display());
    }

    let again = backup(&db, &copy);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("--force"));
    let forced = leadgate()
        .arg("backup")
        .arg("--db")
        .arg(&db)
        .arg(&copy)
        .arg("--force")
        .env("LEADGATE_BACKUP_KEY", "a separate backup key")
        .output()
        .unwrap();
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    let conn = rusqlite::Connection::open(&copy).unwrap();
    conn.pragma_update(None, "key", "a separate backup key")
        .unwrap();
    let leads: i64 = conn
        .query_row("SELECT count(*) FROM leads", [], |row| row.get(0))
        .unwrap();
    assert_eq!(leads, 1);
}

#[test]
fn wrong_or_missing_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leads.db");
    create_db(&db, &passphrase(DB_KEY));

    let wrong = "not the right passphrase";
    let serve = leadgate()
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .env("LEADGATE_DB_KEY", wrong)
        .output()
        .unwrap();
    assert_key_error(
        &serve,
        "wrong database key or not a leadgate database",
        wrong,
    );
    let copy = dir.path().join("copy.db");
    let output = leadgate()
        .arg("backup")
        .arg("--db")
        .arg(&db)
        .arg(&copy)
        .env("LEADGATE_DB_KEY", wrong)
        .output()
        .unwrap();
    assert_key_error(
        &output,
        "wrong database key or not a leadgate database",
        wrong,
    );
    assert!(!copy.exists(), "a backup was written with the wrong key");

    let missing = leadgate()
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .env_remove("LEADGATE_DB_KEY")
        .output()
        .unwrap();
    assert_key_error(&missing, "LEADGATE_DB_KEY", DB_KEY);
    assert!(text(&missing.stderr).contains("database.key_file"));

    let key_file = dir.path().join("db.key");
    std::fs::write(&key_file, format!("{DB_KEY}\n")).unwrap();
    let from_file = leadgate()
        .arg("backup")
        .arg("--db")
        .arg(&db)
        .arg(&copy)
        .env_remove("LEADGATE_DB_KEY")
        .env("LEADGATE_DB_KEY_FILE", &key_file)
        .output()
        .unwrap();
    assert!(from_file.status.success(), "{}", text(&from_file.stderr));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let shared = leadgate()
            .arg("backup")
            .arg("--db")
            .arg(&db)
            .arg(&copy)
            .arg("--force")
            .env_remove("LEADGATE_DB_KEY")
            .env("LEADGATE_DB_KEY_FILE", &key_file)
            .output()
            .unwrap();
        assert!(shared.status.success(), "{}", text(&shared.stderr));
        assert!(
            text(&shared.stderr).contains("readable by other users"),
            "{}",
            text(&shared.stderr)
        );
    }

    let onto_itself = leadgate()
        .arg("backup")
        .arg("--db")
        .arg(&db)
        .arg(&db)
        .arg("--force")
        .output()
        .unwrap();
    assert_eq!(onto_itself.status.code(), Some(1));
    assert!(
        text(&onto_itself.stderr).contains("is the database itself"),
        "{}",
        text(&onto_itself.stderr)
    );

    let both = leadgate()
        .arg("backup")
        .arg("--db")
        .arg(&db)
        .arg(dir.path().join("other.db"))
        .env("LEADGATE_DB_UNENCRYPTED", "1")
        .output()
        .unwrap();
    assert_key_error(&both, "remove one of them", DB_KEY);

    // An unencrypted database is refused with a key, as it is not a SQLCipher file.
    let plain = dir.path().join("plain.db");
    create_db(&plain, &DbKey::Unencrypted);
    let output = backup(&plain, &dir.path().join("plain-copy.db"));
    assert_key_error(
        &output,
        "wrong database key or not a leadgate database",
        DB_KEY,
    );
}

#[test]
fn insecure_modes_warn() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.db");
    create_db(&plain, &DbKey::Unencrypted);
    let copy = dir.path().join("copy.db");
    let output = leadgate()
        .arg("backup")
        .arg("--db")
        .arg(&plain)
        .arg(&copy)
        .env_remove("LEADGATE_DB_KEY")
        .env("LEADGATE_DB_UNENCRYPTED", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("NOT encrypted"),
        "{}",
        text(&output.stderr)
    );
    assert!(std::fs::read(&copy).unwrap().starts_with(SQLITE_MAGIC));

    // The warning about plain HTTP comes before the model loads, so a missing model
    // file ends the run right after it.
    let serve = leadgate()
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--model",
            "/nonexistent/model.gguf",
        ])
        .arg("--db")
        .arg(dir.path().join("served.db"))
        .output()
        .unwrap();
    let stderr = text(&serve.stderr);
    assert!(!serve.status.success());
    assert!(
        stderr.contains("plain HTTP beyond the loopback address"),
        "{stderr}"
    );
}

#[test]
fn rekey_replaces_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leads.db");
    create_db(&db, &passphrase(DB_KEY));
    let new_key = "the new passphrase";

    let missing = leadgate()
        .args(["db", "rekey", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("LEADGATE_NEW_DB_KEY"));

    let rekey = leadgate()
        .args(["db", "rekey", "--db"])
        .arg(&db)
        .env("LEADGATE_NEW_DB_KEY", new_key)
        .output()
        .unwrap();
    assert!(rekey.status.success(), "{}", text(&rekey.stderr));
    assert!(!text(&rekey.stderr).contains(new_key));

    let old = backup(&db, &dir.path().join("old.db"));
    assert_key_error(&old, "wrong database key", DB_KEY);
    let new = leadgate()
        .arg("backup")
        .arg("--db")
        .arg(&db)
        .arg(dir.path().join("new.db"))
        .env("LEADGATE_DB_KEY", new_key)
        .output()
        .unwrap();
    assert!(new.status.success(), "{}", text(&new.stderr));

    // Back to the first key, this time from a key file.
    let key_file = dir.path().join("next.key");
    std::fs::write(&key_file, DB_KEY).unwrap();
    let back = leadgate()
        .args(["db", "rekey", "--db"])
        .arg(&db)
        .arg("--new-key-file")
        .arg(&key_file)
        .env("LEADGATE_DB_KEY", new_key)
        .output()
        .unwrap();
    assert!(back.status.success(), "{}", text(&back.stderr));
    let conn = open_db(&db);
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(verdict, "ok");
}

mod tls {
    use std::sync::Arc;

    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper::{Request, Version};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::net::TcpStream;
    use tokio_rustls::TlsConnector;

    /// One response: the HTTP version, the status and the body.
    pub type Answer = (Version, u16, String);

    /// Sends one request over TLS to `address`, trusting only `cert`, and speaks the
    /// protocol named by `alpn` (`h2` or `http/1.1`).
    pub async fn request(
        address: &str,
        cert: CertificateDer<'static>,
        alpn: &[u8],
        request: Request<Full<Bytes>>,
    ) -> Answer {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];

        let tcp = TcpStream::connect(address).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        assert_eq!(negotiated.as_deref(), Some(alpn), "ALPN");

        let io = TokioIo::new(tls);
        let response = if alpn == b"h2" {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        };

        let version = response.version();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (version, status, String::from_utf8_lossy(&body).into_owned())
    }
}

#[test]
fn tls_serves_http1_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".into()])
            .unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.key_pair.serialize_pem()).unwrap();
    let cert = certified.cert.der().clone();

    let db = dir.path().join("leads.db");
    let (cert_arg, key_arg) = (cert_path.to_str().unwrap(), key_path.to_str().unwrap());
    let server = Server::start(
        &db,
        &[
            "--tls-cert",
            cert_arg,
            "--tls-key",
            key_arg,
            "--wait-ms",
            "0",
        ],
    );
    let address = server
        .base
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("not an https address: {}", server.base))
        .to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let host = format!("https://{address}");
    let authorization = format!("Bearer {}", server.bot.as_deref().expect("a bot key"));
    let get = |path: &str| {
        hyper::Request::get(format!("{host}{path}"))
            .header("authorization", &authorization)
            .body(http_body_util::Full::new(hyper::body::Bytes::new()))
            .unwrap()
    };

    let (version, status, body) = runtime.block_on(tls::request(
        &address,
        cert.clone(),
        b"http/1.1",
        get("/healthz"),
    ));
    assert_eq!(version, hyper::Version::HTTP_11);
    assert_eq!(status, 200, "{body}");

    let lead = json!({"channel": "web", "external_id": "tls-1",
        "text": "Сколько стоит маникюр?"});
    let post = hyper::Request::post(format!("{host}/v1/leads"))
        .header("content-type", "application/json")
        .header("authorization", &authorization)
        .body(http_body_util::Full::new(hyper::body::Bytes::from(
            lead.to_string(),
        )))
        .unwrap();
    let (version, status, body) =
        runtime.block_on(tls::request(&address, cert.clone(), b"h2", post));
    assert_eq!(version, hyper::Version::HTTP_2);
    assert!(status == 201 || status == 202, "{status}: {body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["lead_id"]
        .as_i64()
        .unwrap();
    let (version, status, body) = runtime.block_on(tls::request(
        &address,
        cert.clone(),
        b"h2",
        get(&format!("/v1/leads/{id}")),
    ));
    assert_eq!(version, hyper::Version::HTTP_2);
    assert_eq!(status, 200, "{body}");

    // A plain HTTP request to the TLS port gets no HTTP response.
    let plain = common::server::agent()
        .get(&format!("http://{address}/healthz"))
        .timeout(Duration::from_secs(10))
        .call();
    assert!(plain.is_err(), "plain HTTP was answered");
    server.stop();
}
