//! `ceiling`: what the receiver and the machine allow. The harness's own client (reqwest with
//! rustls, offering HTTP/2 and HTTP/1.1 like Herald's) posts the request Herald sent in the
//! throughput workload, headers and body, to a fresh receiver of the same kind, with Herald's
//! per-endpoint concurrency. Herald's throughput is then given as a fraction of this rate. No
//! Herald runs here, so there is no memory figure.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::herald::IN_FLIGHT_PER_ENDPOINT;
use crate::receiver::{Behaviour, Sample};
use crate::report::Metric;
use crate::stats::rate;

use super::{Bench, Figures, protocol_note};

/// Runs the workload; the throughput workload must have run before it.
pub(super) async fn run(bench: &mut Bench) -> anyhow::Result<Figures> {
    let Some(reference) = &bench.throughput else {
        bail!("the throughput workload left no request to replay");
    };
    let requests = bench.scale.events;
    let receiver = bench.receiver(Behaviour::Answer)?;
    let client = direct_client(bench)?;
    let headers = sample_headers(&reference.sample)?;
    let body = reference.sample.body.clone();
    let url = receiver.url();

    let deadline = bench.scale.deadline(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT_PER_ENDPOINT {
        let (client, headers, body, url) =
            (client.clone(), headers.clone(), body.clone(), url.clone());
        let next = Arc::clone(&next);
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                post(&client, &url, &headers, &body).await?;
            }
            anyhow::Ok(())
        });
    }
    let joined = tokio::time::timeout_at(deadline.into(), async {
        while let Some(task) = tasks.join_next().await {
            task.context("a ceiling client panicked")??;
        }
        anyhow::Ok(())
    })
    .await;
    let mut figures = Figures::default();
    match joined {
        Ok(result) => result?,
        Err(_) => figures.stopped_short(format!(
            "only {} of {requests} requests were answered in time",
            receiver.total()
        )),
    }
    let requests_per_second = rate(receiver.total(), started.elapsed());
    figures.metric(Metric::new(
        "direct request rate",
        requests_per_second,
        "requests/s",
    ));
    figures.metric(Metric::new(
        "herald throughput / direct rate",
        reference.deliveries_per_second / requests_per_second,
        "fraction",
    ));
    figures.note(format!(
        "{requests} requests of {} body bytes with {IN_FLIGHT_PER_ENDPOINT} in flight, straight \
         to one receiver; no Herald runs in this workload, so no memory figure",
        body.len()
    ));
    figures.note(protocol_note(std::slice::from_ref(&receiver)));
    Ok(figures)
}

/// The harness's own client: reqwest with rustls, HTTP/2 or HTTP/1.1 by ALPN like Herald's,
/// trusting the receivers' CA.
pub(super) fn direct_client(bench: &Bench) -> anyhow::Result<reqwest::Client> {
    client_trusting(&bench.pki.root_pem)
}

/// A bare client that trusts the CA `root_pem`.
pub(super) fn client_trusting(root_pem: &str) -> anyhow::Result<reqwest::Client> {
    let root = reqwest::Certificate::from_pem(root_pem.as_bytes())
        .context("reading the CA certificate")?;
    #[expect(
        clippy::disallowed_methods,
        reason = "the ceiling workload is the reference Herald is measured against: a bare client sending to the bench's own loopback receiver"
    )]
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .min_tls_version(reqwest::tls::Version::TLS_1_2)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .add_root_certificate(root)
        .build()
        .context("building the ceiling client")?;
    Ok(client)
}

/// Posts `headers` and `body` to `url` and reads the answer, which must be a success.
pub(super) async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> anyhow::Result<()> {
    let response = client
        .post(url)
        .headers(headers.clone())
        .body(body.clone())
        .send()
        .await
        .context("posting to the receiver")?;
    if !response.status().is_success() {
        bail!("the receiver answered {}", response.status());
    }
    response.bytes().await.context("reading the answer")?;
    Ok(())
}

/// The headers of a request Herald sent, to send again.
pub(super) fn sample_headers(sample: &Sample) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for (name, value) in &sample.headers {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).context("a sampled header name")?,
            HeaderValue::from_bytes(value).context("a sampled header value")?,
        );
    }
    Ok(headers)
}
