//! A running `syncledger serve` child: started once its listening line is read, stopped
//! with SIGTERM, its stderr (the logs) collected throughout.

use super::Api;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const LISTENING: &str = "listening on http://";

pub struct Server {
    child: Child,
    pub url: String,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
}

/// How a server ended.
pub struct Stopped {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Server {
    pub async fn start(mut cmd: Command) -> Server {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn syncledger serve");
        let stderr = tokio::spawn(read_all(child.stderr.take().expect("piped stderr")));
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = timeout(START_TIMEOUT, lines.next_line()).await;
        let url = match &first {
            Ok(Ok(Some(line))) => line
                .strip_prefix("listening on ")
                .filter(|u| u.starts_with("http://"))
                .map(str::to_string),
            _ => None,
        };
        let Some(url) = url else {
            let _ = child.start_kill();
            let logs = stderr.await.unwrap_or_default();
            panic!("serve did not print `{LISTENING}…` first (got {first:?}); stderr:\n{logs}");
        };
        let stdout = tokio::spawn(async move {
            let mut rest = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                rest.push_str(&line);
                rest.push('\n');
            }
            rest
        });
        Server {
            child,
            url,
            stdout,
            stderr,
        }
    }

    /// The server process's id, e.g. to read its `/proc` status.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the server is still running")
    }

    pub fn api(&self, token: &str) -> Api {
        Api::new(&self.url, token)
    }

    /// SIGTERM, then wait (bounded) for the exit.
    pub async fn stop(mut self) -> Stopped {
        let pid = self.child.id().expect("the server is still running");
        let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits in i32"));
        kill(pid, Signal::SIGTERM).expect("send SIGTERM to the server");
        let status = match timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.expect("wait for the server"),
            Err(_) => {
                let _ = self.child.start_kill();
                panic!("serve did not exit within {STOP_TIMEOUT:?} of SIGTERM");
            }
        };
        let stderr = collect(self.stderr).await;
        let stdout = collect(self.stdout).await;
        Stopped {
            status,
            stdout,
            stderr,
        }
    }

    /// Wait (bounded) for a server that is ending on its own (a crash point).
    pub async fn exited(mut self) -> Stopped {
        let status = match timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.expect("wait for the server"),
            Err(_) => {
                let _ = self.child.start_kill();
                panic!("serve did not exit within {STOP_TIMEOUT:?}");
            }
        };
        Stopped {
            status,
            stderr: collect(self.stderr).await,
            stdout: collect(self.stdout).await,
        }
    }

    /// Stop, and insist on exit status 0.
    pub async fn stop_ok(self) -> Stopped {
        let stopped = self.stop().await;
        assert!(
            stopped.status.success(),
            "serve exited with {} after SIGTERM; stderr:\n{}",
            stopped.status,
            stopped.stderr
        );
        stopped
    }
}

async fn read_all(mut pipe: impl AsyncRead + Unpin) -> String {
    let mut bytes = Vec::new();
    let _ = pipe.read_to_end(&mut bytes).await;
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn collect(task: JoinHandle<String>) -> String {
    match timeout(STOP_TIMEOUT, task).await {
        Ok(Ok(text)) => text,
        _ => panic!("the server's output did not close after it exited"),
    }
}
