//! The real `leadgate serve` binary on 127.0.0.1 with the small SmolLM2 model.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// The database passphrase the test servers and commands use.
pub const DB_KEY: &str = "test passphrase for the leadgate suite";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(180);

/// Returns the `leadgate` command with the test models, the test database key and no
/// configuration from the caller's environment.
pub fn leadgate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leadgate"));
    command
        .env("LEADGATE_MODELS_DIR", super::models_dir())
        .env("LEADGATE_DB_KEY", DB_KEY)
        .env("HF_HUB_OFFLINE", "1");
    for name in [
        "LEADGATE_CONFIG",
        "LEADGATE_DB",
        "LEADGATE_DB_KEY_FILE",
        "LEADGATE_DB_UNENCRYPTED",
        "LEADGATE_NEW_DB_KEY",
        "LEADGATE_NEW_DB_KEY_FILE",
        "LEADGATE_BACKUP_KEY",
        "LEADGATE_BACKUP_KEY_FILE",
        "LEADGATE_QUEUE_CAPACITY",
        "LEADGATE_WAIT_MS",
        "LEADGATE_TLS_CERT",
        "LEADGATE_TLS_KEY",
        "LEADGATE_MAX_BODY_BYTES",
        "LEADGATE_MAX_HEADER_BYTES",
        "LEADGATE_DB_BUSY_TIMEOUT_MS",
        "LEADGATE_REQUEST_TIMEOUT_MS",
        "LEADGATE_RATE_PER_MINUTE",
        "LEADGATE_RATE_BURST",
    ] {
        command.env_remove(name);
    }
    command
}

/// A running server; it is killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `leadgate serve` on `db` with SmolLM2 and `extra_args`.
    pub fn start(db: &Path, extra_args: &[&str]) -> Server {
        Server::start_command(db, extra_args, leadgate())
    }

    /// Starts `leadgate serve` from `command`, which sets the environment.
    pub fn start_command(db: &Path, extra_args: &[&str], mut command: Command) -> Server {
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--model", super::SMOLLM])
            .arg("--db")
            .arg(db)
            .args(["--max-tokens", "64", "--threads", "1"])
            .args(extra_args)
            .env("LEADGATE_LOG", "debug,leadgate::prompt=trace")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start the leadgate binary");
        let log = Arc::new(Mutex::new(String::new()));
        let (address_sender, address) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("leadgate listening on ") {
                    let _ = address_sender.send(rest.to_string());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let base = match address.recv_timeout(STARTUP_TIMEOUT) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                panic!("the server did not start; log:\n{}", log.lock().unwrap());
            }
        };
        Server { child, base, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -TERM failed");
        let exit = self.child.wait().expect("cannot wait for the server");
        // Let the reader thread take the last lines.
        std::thread::sleep(Duration::from_millis(200));
        assert!(exit.success(), "server exit {exit:?}; log:\n{}", self.log());
        self.log()
    }

    /// Kills the process with SIGKILL, as a crash or `kill -9` would.
    pub fn kill(mut self) {
        self.child.kill().expect("cannot kill the server");
        self.child.wait().expect("cannot wait for the server");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(600))
        .build()
}

/// Sends a request and returns the status, the JSON body and `Retry-After`, for any
/// status.
pub fn send(request: ureq::Request, body: Option<&str>) -> (u16, Value, Option<String>) {
    let result = match body {
        Some(body) => request.send_string(body),
        None => request.call(),
    };
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("request failed: {error}"),
    };
    let status = response.status();
    let retry_after = response.header("Retry-After").map(str::to_string);
    let text = response.into_string().unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value, retry_after)
}

pub fn post_lead(server: &Server, body: &Value) -> (u16, Value, Option<String>) {
    let request = agent()
        .post(&server.url("/v1/leads"))
        .set("Content-Type", "application/json");
    send(request, Some(&body.to_string()))
}

pub fn get_lead(server: &Server, id: i64) -> (u16, Value) {
    let (status, body, _) = send(agent().get(&server.url(&format!("/v1/leads/{id}"))), None);
    (status, body)
}

/// Opens the database with the test key, as an auditor with the key would.
pub fn open_db(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "key", DB_KEY).unwrap();
    conn
}
