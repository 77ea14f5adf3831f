//! Many organizations, each with its key and its endpoints, made through the API from several
//! clients at once: the scale workloads' setup (thousands of organizations take a minute this
//! way, which is setup, not measured).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;

use crate::api::{Api, Org};

/// Concurrent clients making organizations.
const CLIENTS: usize = 16;

/// An organization and its endpoints' ids, in the order their URLs were given.
#[derive(Debug, Clone)]
pub(super) struct Tenant {
    pub(super) org: Org,
    pub(super) endpoints: Vec<String>,
}

/// Makes `count` organizations named `<prefix>-<n>`, organization `n` with one endpoint per
/// URL of `urls(n)`; they come back in order of `n`.
pub(super) async fn tenants(
    api: &Api,
    prefix: &str,
    count: usize,
    urls: impl Fn(usize) -> Vec<String> + Send + Sync + 'static,
) -> anyhow::Result<Vec<Tenant>> {
    let next = Arc::new(AtomicUsize::new(0));
    let urls = Arc::new(urls);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS.min(count) {
        let (api, next, urls) = (api.clone(), Arc::clone(&next), Arc::clone(&urls));
        let prefix = prefix.to_owned();
        tasks.spawn(async move {
            let mut made = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return anyhow::Ok(made);
                }
                let org = api.create_org(&format!("{prefix}-{n}")).await?;
                let mut endpoints = Vec::new();
                for url in urls(n) {
                    endpoints.push(api.create_endpoint(&org, &url).await?);
                }
                made.push((n, Tenant { org, endpoints }));
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(made) = tasks.join_next().await {
        all.extend(made.context("a provisioning client panicked")??);
    }
    all.sort_unstable_by_key(|(n, _)| *n);
    Ok(all.into_iter().map(|(_, tenant)| tenant).collect())
}
