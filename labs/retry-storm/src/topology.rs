//! The chain under test: the dependency and one to three service layers in front of it,
//! each a real HTTP server on its own loopback port.
//!
//! ```text
//! user ──HTTP──▶ L1 /work ──HTTP──▶ L2 /work ──HTTP──▶ L3 /work ──HTTP──▶ dependency /call
//! ```

use std::sync::Arc;

use labkit::http::TestServer;

use crate::app::{App, Resilience, router};
use crate::clock::Clock;
use crate::dependency::{Faults, RunningDependency};

/// One service layer and its server.
#[derive(Debug)]
pub struct Layer {
    pub app: Arc<App>,
    pub server: TestServer,
}

/// Everything one scenario talks to. Dropping it stops every server and worker.
#[derive(Debug)]
pub struct Chain {
    /// Front first: `layers[0]` is what users call.
    pub layers: Vec<Layer>,
    pub dependency: RunningDependency,
}

impl Chain {
    /// Start the dependency, then the layers from the back: `layers[0]` of `cfgs` is the
    /// front (L1), the last one calls the dependency.
    pub async fn spawn(
        faults: Faults,
        seed: u64,
        cfgs: &[Resilience],
        clock: Clock,
    ) -> std::io::Result<Self> {
        let dependency = RunningDependency::spawn(faults, seed).await?;
        let mut next = dependency.call_url();
        let mut layers = Vec::with_capacity(cfgs.len());
        for (i, cfg) in cfgs.iter().enumerate().rev() {
            let app = Arc::new(App::new(
                &format!("L{}", i + 1),
                *cfg,
                next.clone(),
                clock.clone(),
            ));
            let server = labkit::http::spawn(router(app.clone())).await?;
            next = server.url("/work");
            layers.push(Layer { app, server });
        }
        layers.reverse();
        Ok(Self { layers, dependency })
    }

    pub fn front(&self) -> &Layer {
        &self.layers[0]
    }

    /// A URL on the front layer.
    pub fn url(&self, path: &str) -> String {
        self.front().server.url(path)
    }
}
