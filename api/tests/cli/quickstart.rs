//! The README's quick start, run as written: the `sh` block between the quick-start
//! markers, with only its port line changed to free ports, in a fresh directory, by
//! `bash -euo pipefail`, with this build's `syncledger` first on `PATH`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use syncledger_testkit::db::{private_tempdir, require_ci_services};

const BEGIN: &str = "<!-- quickstart:begin -->";
const END: &str = "<!-- quickstart:end -->";
/// The whole quick start, both servers included.
const TIMEOUT: Duration = Duration::from_secs(180);
/// Variables of the test's environment that would change what `syncledger` does.
const INHERITED: [&str; 3] = ["DATABASE_URL", "NATS_URL", "RUST_LOG"];

/// The commands of the fenced `sh` block between the markers.
fn quick_start(readme: &str) -> Result<String, String> {
    let (_, rest) = readme
        .split_once(BEGIN)
        .ok_or(format!("no {BEGIN} in the README"))?;
    let (inside, _) = rest
        .split_once(END)
        .ok_or(format!("no {END} after {BEGIN}"))?;
    let (_, body) = inside
        .split_once("```sh\n")
        .ok_or("no ```sh block between the markers")?;
    let (script, after) = body.split_once("```").ok_or("the sh block is not closed")?;
    if !after.trim().is_empty() {
        return Err("more than one block between the markers".into());
    }
    Ok(script.to_string())
}

/// The script with its one port line (`PORT=… CRM_PORT=…`) naming `ports` instead.
fn with_ports(script: &str, (port, crm_port): (u16, u16)) -> Result<String, String> {
    let is_port_line = |line: &str| line.starts_with("PORT=") && line.contains(" CRM_PORT=");
    let found = script.lines().filter(|l| is_port_line(l)).count();
    if found != 1 {
        return Err(format!("{found} port lines (PORT=… CRM_PORT=…), not one"));
    }
    let lines: Vec<String> = script
        .lines()
        .map(|line| {
            if is_port_line(line) {
                format!("PORT={port} CRM_PORT={crm_port}")
            } else {
                line.to_string()
            }
        })
        .collect();
    Ok(lines.join("\n") + "\n")
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}

/// Whether `tool --version` runs.
fn present(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The script's process group, killed whole when the test ends however it ends: the
/// servers the script left in the background go with it.
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.0), Signal::SIGKILL);
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn the_block_is_found_between_the_markers_and_only_its_port_line_changes() {
    let readme =
        format!("intro\n{BEGIN}\n```sh\nPORT=1 CRM_PORT=2   # ports\necho $PORT\n```\n{END}\n");
    let script = quick_start(&readme).expect("found");
    assert_eq!(script, "PORT=1 CRM_PORT=2   # ports\necho $PORT\n");
    assert_eq!(
        with_ports(&script, (7, 8)).expect("one port line"),
        "PORT=7 CRM_PORT=8\necho $PORT\n"
    );
    assert!(quick_start("no markers here").is_err());
    assert!(quick_start(&format!("{BEGIN}\n```sh\nx\n")).is_err());
    assert!(with_ports("echo\n", (7, 8)).is_err());
}

#[tokio::test]
async fn the_readme_quick_start_runs_as_written() {
    for tool in ["bash", "curl", "jq"] {
        if !present(tool) {
            assert!(
                !require_ci_services(),
                "the quick start needs {tool} (CI=true)"
            );
            eprintln!("skipped: the quick start needs {tool}, not found");
            return;
        }
    }
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("read README.md");
    let script = quick_start(&readme).expect("the README's quick start");
    let script = with_ports(&script, (free_port(), free_port())).expect("its port line");

    let dir = private_tempdir();
    let script_path = dir.path().join("quickstart.sh");
    std::fs::write(&script_path, &script).expect("write the script");
    let (out, err) = (dir.path().join("out.txt"), dir.path().join("err.txt"));
    let bin_dir: PathBuf = Path::new(env!("CARGO_BIN_EXE_syncledger"))
        .parent()
        .expect("the binary's directory")
        .to_path_buf();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(&path)))
        .expect("PATH");

    let mut cmd = tokio::process::Command::new("bash");
    cmd.args(["-euo", "pipefail"])
        .arg(&script_path)
        .current_dir(dir.path())
        .env("PATH", path)
        .stdin(Stdio::null())
        // Files, not pipes: a server left running after a failure must not hold the
        // test's reading end open.
        .stdout(std::fs::File::create(&out).expect("out file"))
        .stderr(std::fs::File::create(&err).expect("err file"))
        .process_group(0)
        .kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        let name_str = name.to_string_lossy();
        if name_str.starts_with("SYNCLEDGER_") || INHERITED.contains(&name_str.as_ref()) {
            cmd.env_remove(&name);
        }
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start bash");
    let _group = Group(i32::try_from(child.id().expect("a running child")).expect("a pid"));
    let status = tokio::time::timeout(TIMEOUT, child.wait()).await;
    let took = started.elapsed();
    let report = || {
        format!(
            "after {took:?}\n--- stdout\n{}\n--- stderr\n{}\n--- serve.log\n{}\n--- sandbox.log\n{}",
            read(&out),
            read(&err),
            read(&dir.path().join("serve.log")),
            read(&dir.path().join("sandbox.log")),
        )
    };
    let status = match status {
        Ok(status) => status.expect("wait for bash"),
        Err(_) => panic!(
            "the quick start did not finish in {TIMEOUT:?}: {}",
            report()
        ),
    };
    assert!(
        status.success(),
        "the quick start failed ({status}): {}",
        report()
    );
    let stdout = read(&out);
    eprintln!("the quick start took {took:?}");
    // It connected, imported, settled the conflict and completed the rollback run.
    let runs: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(r#""status":"completed""#))
        .collect();
    assert!(
        stdout.contains(r#""status":"connected""#),
        "connected: {}",
        report()
    );
    assert!(
        runs.iter().any(|l| l.contains(r#""kind":"full""#))
            && runs.iter().any(|l| l.contains(r#""kind":"rollback""#)),
        "a full run and a rollback run completed: {}",
        report()
    );
    assert!(
        stdout.contains(r#""resolution":"use_crm""#),
        "the conflict resolved: {}",
        report()
    );
}
