//! The `lab` binary as a user runs it: exit codes, one-line errors, JSON on stdout only,
//! and nothing left behind after Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn lab() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lab"));
    // Tests choose their backend explicitly; the caller's environment must not leak in.
    c.env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("LAB_BACKEND")
        .env("RUST_LOG", "warn");
    c
}

const LAB_IDS: [&str; 7] = [
    "seek-vs-scan",
    "cache-stampede",
    "idempotency-keys",
    "keyset-pagination",
    "rest-vs-graphql",
    "isolation-levels",
    "rate-limiter",
];

#[test]
fn list_shows_every_registered_lab() {
    let out = lab().arg("list").output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    for id in LAB_IDS {
        assert!(
            stdout.contains(id),
            "{id} missing from `lab list`:\n{stdout}"
        );
    }
}

#[test]
fn an_unknown_lab_exits_2_and_lists_the_ids() {
    let out = lab().args(["run", "no-such-lab"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("unknown lab `no-such-lab`"), "{stderr}");
    assert!(stderr.contains("seek-vs-scan"), "{stderr}");
}

#[test]
fn a_bad_database_url_is_one_line_naming_the_variable() {
    let out = lab()
        .args(["run", "seek-vs-scan", "--scale", "smoke"])
        .env("DATABASE_URL", "not a url")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line, got:\n{stderr}");
    assert!(lines[0].contains("DATABASE_URL"), "{stderr}");
}

#[test]
fn half_of_the_env_urls_is_an_error_not_a_silent_fallback() {
    let out = lab()
        .args(["run", "seek-vs-scan", "--scale", "smoke"])
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("REDIS_URL is not set"));
}

#[test]
fn backend_docker_without_an_engine_says_so_clearly() {
    let out = lab()
        .args(["run", "seek-vs-scan", "--backend", "docker"])
        // Point the client at nothing, so this holds even on a machine with Docker.
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("no Docker engine answered"), "{stderr}");
}

#[test]
fn serve_for_a_lab_without_a_server_says_so() {
    let out = lab()
        .args(["serve", "isolation-levels", "--port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no HTTP server"));
}

#[test]
fn json_format_prints_only_the_report_on_stdout_with_the_labs_contract_keys_and_knobs() {
    let out = lab()
        .args([
            "run",
            "seek-vs-scan",
            "--scale",
            "smoke",
            "--format",
            "json",
            "--clients",
            "2",
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(v["schema_version"], 2);
    assert_eq!(v["lab"], "seek-vs-scan");
    assert_eq!(v["scale"], "smoke");
    for key in lab_seek_vs_scan::FINDING_KEYS {
        assert!(
            v["findings"][key]["value"].is_number(),
            "finding {key} missing"
        );
    }
    // The knobs reached every load phase: 2 clients, phases planned at 1 s.
    assert_eq!(v["load"]["clients"], 2);
    assert_eq!(v["load"]["duration_s"], 1.0);
    let phases = v["phases"].as_array().unwrap();
    assert!(!phases.is_empty());
    for p in phases {
        assert_eq!(p["clients"], 2, "{p}");
        assert_eq!(p["planned_s"], 1.0, "{p}");
    }
}

/// Pids of processes whose parent is `ppid` (the servers a run started).
fn children_of(ppid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    // "pid (comm) state ppid ..." — comm may contain spaces; split after ')'.
                    let rest = &s[s.rfind(')')? + 2..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(ppid)
        })
        .collect()
}

#[test]
fn ctrl_c_mid_run_leaves_no_server_temp_dir_or_process_behind() {
    let mut child = lab()
        .args([
            "run",
            "seek-vs-scan",
            "--scale",
            "large",
            "--backend",
            "local",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // t1: wait until the lab is running: its servers are up and seeding has begun.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "lab exited before running"
        );
        if line.contains("running seek-vs-scan") {
            break;
        }
    }
    let servers = children_of(pid);
    assert_eq!(
        servers.len(),
        2,
        "a postgres and a redis-server were started: {servers:?}"
    );
    let dirs: Vec<std::path::PathBuf> = servers
        .iter()
        .filter_map(|p| std::fs::read_link(format!("/proc/{p}/cwd")).ok())
        .filter(|d| d.display().to_string().contains("labkit-"))
        .collect();
    // t2: Ctrl-C, as a terminal would send it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "lab did not exit after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130), "exit code 130 after SIGINT");
    // t3: the servers are gone (reaped, not even zombies) and so are their temp dirs.
    for p in servers {
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists(),
            "server {p} still running"
        );
    }
    for d in dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn list_as_json_and_shell_completions_work() {
    let out = lab().args(["list", "--format", "json"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = v["labs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    for id in LAB_IDS {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let out = lab().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("compare") && script.contains("doctor"),
            "{shell}"
        );
    }
}

/// Run seek-vs-scan at smoke scale into `dir` (a saved run, as a user keeps one).
fn saved_run(dir: &std::path::Path) {
    let out = lab()
        .args([
            "run",
            "seek-vs-scan",
            "--scale",
            "smoke",
            "--no-progress",
            "--out",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_saved_run_has_an_offline_html_page_and_compare_catches_a_doubled_p95() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    saved_run(&a);

    // The saved run: per-lab JSON and Markdown, and one self-contained page.
    let lab_dir = a.join("seek-vs-scan");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab_dir.join("report.json")).unwrap())
            .unwrap();
    assert!(lab_dir.join("report.md").is_file());
    let html = std::fs::read_to_string(a.join("index.html")).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<section id=\"seek-vs-scan\">"));
    assert!(html.contains("<table class=\"findings\">"));
    assert!(html.contains("covering_p95_ms"));
    let sentence = report["sentence"].as_str().unwrap();
    assert!(html.contains(&sentence[..40].replace('\'', "&#39;")));
    for external in ["<script", "src=\"http", "href=\"http", "@import", "<link"] {
        assert!(
            !html.contains(external),
            "the page must work offline: {external}"
        );
    }
    assert_eq!(
        html.matches("<section").count(),
        html.matches("</section>").count()
    );

    // B: the same run with one p95 doubled.
    let b = tmp.path().join("b");
    std::fs::create_dir_all(b.join("seek-vs-scan")).unwrap();
    let mut doctored = report.clone();
    let p95 = doctored["findings"]["covering_p95_ms"]["value"]
        .as_f64()
        .unwrap();
    doctored["findings"]["covering_p95_ms"]["value"] = serde_json::json!(p95 * 2.0);
    std::fs::write(
        b.join("seek-vs-scan/report.json"),
        serde_json::to_string_pretty(&doctored).unwrap(),
    )
    .unwrap();

    let out = lab().arg("compare").arg(&a).arg(&b).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "no gate, no failure");
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("covering_p95_ms") && table.contains("2.00×"),
        "{table}"
    );
    assert!(table.contains("worse"), "{table}");

    let out = lab()
        .arg("compare")
        .arg(&a)
        .arg(&b)
        .args(["--fail-on-regression", "20"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a doubled p95 is a regression");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("covering_p95_ms"), "{stderr}");
    assert!(!stderr.contains("not comparable"), "same machine: {stderr}");

    let out = lab()
        .arg("compare")
        .arg(&a)
        .arg(tmp.path().join("missing"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));
}

/// Start `lab serve <id> --port 0`, wait until it listens, send `sig`, return the exit code.
fn serve_then_signal(id: &str, sig: nix::sys::signal::Signal) -> Option<i32> {
    let mut child = lab()
        .args(["serve", id, "--port", "0", "--backend", "local"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "serve exited early"
        );
        if line.contains("listening on") {
            break;
        }
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        assert!(Instant::now() < deadline, "serve did not exit after {sig}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_served_lab_exits_130_on_sigint_and_143_on_sigterm() {
    use nix::sys::signal::Signal;
    assert_eq!(serve_then_signal("rate-limiter", Signal::SIGINT), Some(130));
    assert_eq!(
        serve_then_signal("rate-limiter", Signal::SIGTERM),
        Some(143)
    );
}
