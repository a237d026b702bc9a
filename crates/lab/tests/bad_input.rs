//! A corpus of bad requests, sent to every lab's `lab serve` app as an outside client would:
//! malformed JSON, NUL characters in strings, a 10 MB body, the wrong content type, deep
//! nesting, junk query strings, oversized headers, GraphQL alias and depth bombs. The bar:
//! not one 5xx, and every 4xx carries a JSON error body.
//!
//! The routes come from what each app's banner prints (its curl examples, with the real
//! port), so a new server lab is covered as soon as it is registered.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn lab() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lab"));
    c.env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("LAB_BACKEND")
        .env("RUST_LOG", "error");
    c
}

/// A served lab: the child process and its banner (curl examples with the real base URL).
struct Served {
    child: Child,
    base: String,
    banner: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `lab serve <id>`; `None` when the lab has no HTTP server (it says so and exits 2).
fn serve(id: &str) -> Option<Served> {
    let mut child = lab()
        .args(["serve", id, "--port", "0", "--backend", "local"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let base = loop {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            let status = child.wait().unwrap();
            assert_eq!(status.code(), Some(2), "{id}: serve failed: {line}");
            return None;
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Drain stderr in the background so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = stderr.read_to_string(&mut sink);
    });
    // The banner is printed to stdout right after "listening"; read until it goes quiet.
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut banner = Vec::new();
    while let Ok(chunk) = rx.recv_timeout(Duration::from_millis(500)) {
        banner.extend(chunk);
    }
    Some(Served {
        child,
        base,
        banner: String::from_utf8_lossy(&banner).to_string(),
    })
}

/// (method, path-and-query, example JSON body) for every URL in the banner's curl lines.
fn routes(s: &Served) -> Vec<(reqwest::Method, String, Option<String>)> {
    let mut out: Vec<(reqwest::Method, String, Option<String>)> = Vec::new();
    for line in s.banner.lines().filter(|l| l.contains("curl")) {
        let Some(at) = line.find(&s.base) else {
            continue;
        };
        let rest = &line[at + s.base.len()..];
        let path: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '\'' && *c != '"')
            .collect();
        let post = line.contains("-X POST") || line.contains(" -d ");
        let body = line
            .split(" -d '")
            .nth(1)
            .and_then(|b| b.split('\'').next())
            .map(str::to_string);
        let method = if post {
            reqwest::Method::POST
        } else {
            reqwest::Method::GET
        };
        let path = if path.is_empty() { "/".into() } else { path };
        if !out.iter().any(|(m, p, _)| *m == method && *p == path) {
            out.push((method, path, body));
        }
    }
    out
}

/// Put a NUL character into every string of `v`.
fn with_nul(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::String(s) => serde_json::Value::String(format!("{s}\u{0}x")),
        serde_json::Value::Array(a) => a.iter().map(with_nul).collect(),
        serde_json::Value::Object(o) => o.iter().map(|(k, v)| (k.clone(), with_nul(v))).collect(),
        other => other.clone(),
    }
}

/// One bad request.
struct Case {
    what: String,
    method: reqwest::Method,
    path: String,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
    header: Option<(String, String)>,
}

fn corpus(method: &reqwest::Method, path: &str, example: Option<&str>) -> Vec<Case> {
    let case = |what: &str, ct: Option<&'static str>, body: Option<Vec<u8>>| Case {
        what: what.to_string(),
        method: method.clone(),
        path: path.to_string(),
        content_type: ct,
        body,
        header: None,
    };
    let json = Some("application/json");
    let mut cases = vec![
        Case {
            what: "junk query string".into(),
            path: format!(
                "{}{}limit=-1&first=99999999999&cursor=%00%ff%fe&page=abc&x={}",
                path,
                if path.contains('?') { "&" } else { "?" },
                "z".repeat(4000)
            ),
            ..case("", None, None)
        },
        Case {
            header: Some(("x-junk".into(), "h".repeat(100_000))),
            ..case("a 100 KB header", None, None)
        },
    ];
    if *method == reqwest::Method::POST {
        cases.extend([
            case("malformed JSON", json, Some(b"{\"a\": ".to_vec())),
            case(
                "NUL in a string",
                json,
                Some(br#"{"id":"evt\u0000x","type":"a\u0000"}"#.to_vec()),
            ),
            case("JSON null", json, Some(b"null".to_vec())),
            case("JSON array", json, Some(b"[]".to_vec())),
            case(
                "deep nesting",
                json,
                Some(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes()),
            ),
            case(
                "10 MB body",
                json,
                Some(format!("{{\"x\":\"{}\"}}", "a".repeat(10 * 1024 * 1024)).into_bytes()),
            ),
            case("text/plain body", Some("text/plain"), Some(b"{}".to_vec())),
            case("no content type", None, Some(b"{}".to_vec())),
            case(
                "invalid UTF-8",
                json,
                Some(b"{\"a\":\"\xff\xfe\"}".to_vec()),
            ),
        ]);
        if let Some(v) = example.and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok()) {
            cases.push(case(
                "the example with NUL in every string",
                json,
                Some(with_nul(&v).to_string().into_bytes()),
            ));
        }
        if path.contains("graphql") {
            let alias = (0..800)
                .map(|i| format!("a{i}: projects(first: 30) {{ tasks(first: 1) {{ id }} }}"))
                .collect::<Vec<_>>()
                .join(" ");
            let depth = format!(
                "{{ projects(first: 1) {}{} }}",
                "{ tasks(first: 1) { project ".repeat(30),
                "{ id } } }".repeat(30)
            );
            for (what, q) in [
                ("alias bomb", format!("{{ {alias} }}")),
                ("depth bomb", depth),
            ] {
                let body = serde_json::json!({ "query": q }).to_string().into_bytes();
                cases.push(case(what, json, Some(body)));
            }
        }
    }
    cases
}

/// A 4xx body must be JSON with an error: `{"error": {...}}` or GraphQL's `{"errors": [...]}`.
fn is_json_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| {
        v["error"]["code"].is_string() || v["errors"].as_array().is_some_and(|e| !e.is_empty())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_to_every_served_lab_get_4xx_json_and_never_a_5xx() {
    let out = lab().args(["list", "--format", "json"]).output().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut failures = Vec::new();
    let mut served = 0;
    let mut sent = 0;
    for id in list["labs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
    {
        let Some(s) = tokio::task::block_in_place(|| serve(&id)) else {
            continue;
        };
        served += 1;
        let routes = routes(&s);
        assert!(
            !routes.is_empty(),
            "{id}: the banner names no routes:\n{}",
            s.banner
        );
        for (method, path, example) in routes {
            for c in corpus(&method, &path, example.as_deref()) {
                let mut req = client.request(c.method.clone(), format!("{}{}", s.base, c.path));
                if let Some(ct) = c.content_type {
                    req = req.header("content-type", ct);
                }
                if let Some((k, v)) = &c.header {
                    req = req.header(k, v);
                }
                if let Some(b) = c.body {
                    req = req.body(b);
                }
                sent += 1;
                let tag = format!(
                    "{id} {} {} — {}",
                    c.method,
                    &c.path[..c.path.len().min(80)],
                    c.what
                );
                match req.send().await {
                    Err(e) => failures.push(format!("{tag}: no response ({e})")),
                    Ok(res) => {
                        let status = res.status();
                        let body = res.bytes().await.unwrap_or_default();
                        if status.is_server_error() {
                            failures.push(format!(
                                "{tag}: {status} {}",
                                String::from_utf8_lossy(&body[..body.len().min(200)])
                            ));
                        } else if status.is_client_error() && !is_json_error(&body) {
                            failures.push(format!(
                                "{tag}: {status} without a JSON error body: {:?}",
                                String::from_utf8_lossy(&body[..body.len().min(200)])
                            ));
                        }
                    }
                }
            }
        }
        drop(s);
    }
    assert!(served >= 3, "only {served} labs served");
    assert!(
        failures.is_empty(),
        "{} of {sent} bad requests were mishandled:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
