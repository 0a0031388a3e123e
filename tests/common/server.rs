//! The real `leadgate serve` binary on 127.0.0.1 with the small SmolLM2 model, API keys
//! made with the real `leadgate keys create`, and HTTP helpers that return any status.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(180);

/// A running server; it is killed when dropped.
pub struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(db: &Path, extra_args: &[&str]) -> Server {
        Server::start_with_env(db, extra_args, &[])
    }

    /// Starts the server with extra environment variables, such as `LEADGATE_NOW`.
    pub fn start_with_env(db: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_leadgate"))
            .args(["serve", "--listen", "127.0.0.1:0", "--model", super::SMOLLM])
            .arg("--db")
            .arg(db)
            .args(["--max-tokens", "64", "--threads", "1"])
            .args(extra_args)
            .env("LEADGATE_MODELS_DIR", super::models_dir())
            .env("LEADGATE_LOG", "debug,leadgate::prompt=trace")
            .env_remove("LEADGATE_CONFIG")
            .env_remove("LEADGATE_QUEUE_CAPACITY")
            .env_remove("LEADGATE_WAIT_MS")
            .env("HF_HUB_OFFLINE", "1")
            .env_remove("LEADGATE_NOW")
            .envs(env.iter().copied())
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

/// Sends a request and returns the status and the JSON body, for any status.
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

/// Returns a `leadgate` command for one of the database commands.
pub fn leadgate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leadgate"));
    command
        .env_remove("LEADGATE_CONFIG")
        .env_remove("LEADGATE_DB")
        .env_remove("LEADGATE_NOW")
        .env("LEADGATE_LOG", "warn");
    command
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
        let (_, bot) = create_key(db, "bot", "test bot");
        let (_, staff) = create_key(db, "staff", "test staff");
        let (_, admin) = create_key(db, "admin", "test admin");
        Keyed {
            server: Server::start(db, extra_args),
            db: db.to_path_buf(),
            bot,
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
