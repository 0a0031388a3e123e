//! The real `leadgate serve` binary on 127.0.0.1 with the small SmolLM2 model, API keys
//! made with the real `leadgate keys create`, and HTTP helpers that return any status.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
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
        "LEADGATE_WEBHOOK_TOKEN",
        "LEADGATE_NOW",
    ] {
        command.env_remove(name);
    }
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LEADGATE_RETENTION_") {
            command.env_remove(name);
        }
    }
    command
}

/// A running server; it is killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    /// A bot key made before the start, for [`post_lead`] and [`get_lead`]; `None` when the
    /// server was started from a caller's command, whose database key may differ.
    pub bot: Option<String>,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Creates a bot key on `db`, then starts `leadgate serve` on it with SmolLM2 and
    /// `extra_args`.
    pub fn start(db: &Path, extra_args: &[&str]) -> Server {
        Server::start_with_env(db, extra_args, &[])
    }

    /// Creates a bot key on `db`, then starts `leadgate serve` with extra environment
    /// variables, such as `LEADGATE_NOW`.
    pub fn start_with_env(db: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let (_, bot) = create_key(db, "bot", "test bot");
        let mut command = leadgate();
        command.envs(env.iter().copied());
        let mut server = Server::start_command(db, extra_args, command);
        server.bot = Some(bot);
        server
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
        Server {
            child,
            base,
            bot: None,
            log,
        }
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

/// Sends a lead with the server's bot key.
pub fn post_lead(server: &Server, body: &Value) -> (u16, Value, Option<String>) {
    let key = server.bot.as_deref().expect("a server with a bot key");
    call(server, "POST", "/v1/leads", Some(key), Some(body))
}

/// Reads a lead with the server's bot key.
pub fn get_lead(server: &Server, id: i64) -> (u16, Value) {
    let key = server.bot.as_deref().expect("a server with a bot key");
    let (status, body, _) = call(server, "GET", &format!("/v1/leads/{id}"), Some(key), None);
    (status, body)
}

/// Opens the database with the test key, as an auditor with the key would.
pub fn open_db(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "key", DB_KEY).unwrap();
    conn
}

/// Creates an API key with `leadgate keys create` and returns its id and secret.
pub fn create_key(db: &Path, role: &str, name: &str) -> (i64, String) {
    let output = leadgate()
        .args(["keys", "create", "--role", role, "--name", name, "--db"])
        .arg(db)
        .output()
        .expect("cannot run leadgate keys create");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "keys create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let secret = lines.last().expect("a key on the last line").to_string();
    let info: Value = serde_json::from_str(lines[0]).expect("key info as JSON");
    (info["id"].as_i64().expect("key id"), secret)
}

/// A server with one key per role, all made before it starts.
pub struct Keyed {
    pub server: Server,
    pub db: PathBuf,
    pub bot: String,
    pub staff: String,
    pub admin: String,
}

impl Keyed {
    pub fn start(db: &Path, extra_args: &[&str]) -> Keyed {
        Keyed::start_with_env(db, extra_args, &[])
    }

    /// Makes the keys, then starts the server with extra environment variables.
    pub fn start_with_env(db: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Keyed {
        let (_, staff) = create_key(db, "staff", "test staff");
        let (_, admin) = create_key(db, "admin", "test admin");
        let server = Server::start_with_env(db, extra_args, env);
        Keyed {
            bot: server
                .bot
                .clone()
                .expect("Server::start_with_env makes a bot key"),
            server,
            db: db.to_path_buf(),
            staff,
            admin,
        }
    }
}

/// Sends `method path` with an optional key and JSON body; returns the status, the JSON
/// body (or the text as a JSON string) and `Retry-After`.
pub fn call(
    server: &Server,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value, Option<String>) {
    let mut request = agent().request(method, &server.url(path));
    if let Some(key) = key {
        request = request.set("Authorization", &format!("Bearer {key}"));
    }
    match body {
        Some(body) => {
            let request = request.set("Content-Type", "application/json");
            send(request, Some(&body.to_string()))
        }
        None => send(request, None),
    }
}

/// Returns the value of a Prometheus sample, or 0 when the server has not exported it yet.
pub fn metric(server: &Server, name: &str) -> f64 {
    let (_, body, _) = send(agent().get(&server.url("/metrics")), None);
    let text = body.as_str().expect("metrics are text").to_string();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}
