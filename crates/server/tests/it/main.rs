//! Herald's end-to-end suite: every test drives the real HTTP API of a real server bound to
//! `127.0.0.1:0`, on a fresh database, through [`harness::TestApp`].
//!
//! Test bodies are written once as `async fn name(backend: Backend)` and registered with
//! [`backend_tests!`], which runs each of them on every storage backend. A body that is
//! written but not registered is dead code, which the lints refuse.

/// Declares one `#[tokio::test]` per listed body and backend: `backend_tests!(a, b)` in a
/// module yields `sqlite::a`, `sqlite::b`, `postgres::a` and `postgres::b`, each calling the
/// body with its backend. PostgreSQL tests use the server at `HERALD_TEST_POSTGRES_URL`.
macro_rules! backend_tests {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(crate::harness::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(crate::harness::Backend::Postgres).await;
                }
            )+
        }
    };
}

mod harness;

mod abandoned;
mod admin;
mod audit;
mod auth;
mod bad_input;
mod catalog;
mod client_certificates;
mod connections;
mod custom_headers;
mod delivery;
mod delivery_feed;
mod egress_proxy;
mod endpoint_cap;
mod endpoints_create;
mod endpoints_manage;
mod health;
mod hostile;
mod isolation;
mod metrics;
mod openapi;
mod openapi_bounds;
mod operational;
mod ordering;
mod otel;
mod pagination;
mod portal;
mod publish;
mod rate_limit;
mod recovery;
mod regressions;
mod replay;
mod retention;
mod retries;
mod secrets;
mod signing;
mod stats;
mod test_send;
mod threads;
mod trace_context;
mod unreadable_requests;
