//! Is labkit's HTTP load driver the bottleneck it measures? Compare it with wrk.
//!
//! `scripts/compare-drivers.sh` runs this, interleaved with wrk, on the same endpoint and
//! concurrency:
//!
//! ```text
//! # the endpoint alone, for wrk (prints its address):
//! cargo run --release -p labkit --example http_driver -- serve 8090
//! wrk -t1 -c8 -d10s http://127.0.0.1:8090/hello
//! # labkit's driver and the server in one process and one runtime, as in a lab:
//! cargo run --release -p labkit --example http_driver -- drive lean 8 10
//! cargo run --release -p labkit --example http_driver -- drive reqwest 8 10
//! ```
//!
//! `/hello` is the worst case for a driver (the server does almost nothing, so the client's
//! own cost is the largest share); `/work` spends ~100 µs of CPU per request, like a handler
//! that renders or validates something.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use labkit::http::Connections;
use labkit::{Bound, ClosedLoop, closed_loop};

fn router() -> Router {
    Router::new()
        .route(
            "/hello",
            get(|| async { axum::Json(serde_json::json!({"hello": "world"})) }),
        )
        .route(
            "/work",
            get(|| async {
                // ~100 µs of real CPU: hash a buffer repeatedly.
                let t0 = std::time::Instant::now();
                let mut x: u64 = 0x9E37_79B9;
                while t0.elapsed() < Duration::from_micros(100) {
                    for _ in 0..64 {
                        x = x.rotate_left(5) ^ x.wrapping_mul(0x100_0000_01B3);
                    }
                }
                axum::Json(serde_json::json!({"x": x}))
            }),
        )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match args.first().map(String::as_str) {
        Some("serve") => rt.block_on(async {
            let port: u16 = args.get(1).and_then(|p| p.parse().ok()).unwrap_or(8090);
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            eprintln!("serving on http://{}", listener.local_addr().unwrap());
            labkit::http::serve(listener, router(), async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .unwrap();
        }),
        Some("drive") => rt.block_on(async {
            let which = args.get(1).cloned().unwrap_or_else(|| "lean".into());
            let clients: usize = args.get(2).and_then(|c| c.parse().ok()).unwrap_or(8);
            let secs: u64 = args.get(3).and_then(|c| c.parse().ok()).unwrap_or(10);
            let path = args.get(4).cloned().unwrap_or_else(|| "/hello".into());
            let server = labkit::http::spawn(router()).await.unwrap();
            let cfg = ClosedLoop::new(clients, Bound::Duration(Duration::from_secs(secs)))
                .warmup(Duration::from_secs(1));
            let r = if which == "reqwest" {
                let client = labkit::http::client();
                let url = server.url(&path);
                closed_loop(cfg, move |_| {
                    let (client, url) = (client.clone(), url.clone());
                    async move { client.get(url).send().await?.bytes().await }
                })
                .await
                .summary
            } else {
                let conns = Connections::new(server.addr, clients);
                closed_loop(cfg, move |call| {
                    let (conns, path) = (conns.clone(), path.clone());
                    async move { conns.get(call.worker).await.get(&path).await }
                })
                .await
                .summary
            };
            println!(
                "{which} {clients} clients: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, errors {}",
                r.throughput_per_s, r.p50_ms, r.p99_ms, r.errors
            );
        }),
        _ => {
            eprintln!("usage: http_driver serve [PORT] | drive lean|reqwest CLIENTS SECONDS [PATH]")
        }
    }
}
