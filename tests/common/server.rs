//! The real `leadgate serve` binary with the small SmolLM2 model, on 127.0.0.1 with a port
//! the OS picks, and a blocking HTTP client for it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(180);

/// A running server; it is killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(db: &Path, extra_args: &[&str]) -> Server {
        Server::start_with_env(db, extra_args, &[])
    }

    /// Starts the server with extra arguments and environment variables.
    pub fn start_with_env(db: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_leadgate"));
        command
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
            .env_remove("LEADGATE_WEBHOOK_TOKEN")
            .env("HF_HUB_OFFLINE", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("cannot start the leadgate binary");
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

/// Sends a request and returns the status, the JSON body (a string when not JSON) and the
/// Retry-After header, for any status.
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

/// Sends a JSON body with `method` and returns the status and the JSON response body.
pub fn send_json(server: &Server, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let request = agent()
        .request(method, &server.url(path))
        .set("Content-Type", "application/json");
    let (status, value, _) = send(request, Some(&body.to_string()));
    (status, value)
}

/// Sends a GET and returns the status and the JSON response body.
pub fn get_json(server: &Server, path: &str) -> (u16, Value) {
    let (status, value, _) = send(agent().get(&server.url(path)), None);
    (status, value)
}
