//! The process's threads (ARCHITECTURE.md, "Threads"): the delivery worker runs on threads of
//! its own, `HERALD_DELIVERY_NICENESS` (set to 10 here; 0 by default) steps nicer than the API's, so a busy
//! worker leaves the API a core; and the database's connection threads, which serve the API
//! too, keep the API's priority. Read from `/proc/self/task`, as `ps -L` would show them.

use herald_server::background::THREAD_NAME;
use herald_testkit::{Receiver, TestCa};
use serde_json::json;

use crate::harness::{Backend, delivering, wait_for_received};

/// The niceness this test asks for, to see the lowering work (the default, 0, lowers nothing).
const LOWERED_NICENESS_EXAMPLE: i32 = 10;

backend_tests!(delivery_threads_run_nicer_than_the_api_and_the_database_threads);

async fn delivery_threads_run_nicer_than_the_api_and_the_database_threads(backend: Backend) {
    // Arrange: a delivery made, so the worker has claimed, sent and recorded through the store.
    let ca = TestCa::new();
    let receiver = Receiver::spawn(&ca).await;
    let app = delivering(backend, &ca)
        .delivery_niceness(LOWERED_NICENESS_EXAMPLE)
        .spawn()
        .await;
    let org = app.org_with_key().await;
    app.create_endpoint_at(&org.key, &receiver.url("/ok"), &["wallet.balance_low"])
        .await;
    app.publish(org.id, "wallet.balance_low", &json!({})).await;
    wait_for_received(&receiver, 1).await;
    let api_reply = app.get(&org.key, "/v1/webhooks").await;
    assert_eq!(api_reply.status, reqwest::StatusCode::OK);

    // Act
    let threads = threads();
    // The suite may itself run niced (`nice cargo nextest …`): niceness is relative to it.
    let base = niceness(&std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat"));
    let lowered = (base + LOWERED_NICENESS_EXAMPLE).min(19);

    // Assert
    let niceness_of = |name: &str| -> Vec<i32> {
        threads
            .iter()
            .filter(|(comm, _)| comm == name)
            .map(|(_, nice)| *nice)
            .collect()
    };
    let delivery = niceness_of(THREAD_NAME);
    assert!(
        !delivery.is_empty(),
        "no {THREAD_NAME} thread in {threads:?}"
    );
    assert!(
        delivery.iter().all(|nice| *nice == lowered),
        "delivery threads at {delivery:?}, not {lowered}"
    );
    // The test's runtime serves the API, as `herald serve`'s main runtime does.
    let api = niceness_of("tokio-rt-worker");
    assert!(!api.is_empty(), "no API thread in {threads:?}");
    assert!(
        api.iter().all(|nice| *nice == base),
        "API threads at {api:?}"
    );
    if backend == Backend::Sqlite {
        // One thread per SQLite connection: 1 writer, 4 readers, 2 claim readers.
        let database = niceness_of("sqlx-sqlite-wor");
        assert_eq!(database.len(), 7, "SQLite connection threads: {threads:?}");
        assert!(
            database.iter().all(|nice| *nice == base),
            "SQLite connection threads at {database:?}"
        );
    }
}

/// Every thread of this process: its name (at most 15 bytes) and its niceness.
fn threads() -> Vec<(String, i32)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let path = task.expect("a task").path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        threads.push((comm.trim_end().to_owned(), niceness(&stat)));
    }
    threads
}

/// The niceness in a `/proc/…/stat` line: `pid (comm) state ppid …`, the 19th field. The
/// name may hold spaces and parentheses, so fields are counted after the last `)`.
fn niceness(stat: &str) -> i32 {
    stat[stat.rfind(')').expect("stat has the name") + 2..]
        .split(' ')
        .nth(16)
        .and_then(|field| field.parse().ok())
        .expect("stat has the niceness")
}
