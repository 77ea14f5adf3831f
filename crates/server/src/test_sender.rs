//! Wires the delivery side's single-attempt test into the API's [`TestSender`] seam: the API
//! never dials receivers itself, so the server lends it the delivery client.

use std::sync::Arc;

use async_trait::async_trait;
use herald_api::TestSender;
use herald_delivery::DeliveryClient;
use herald_delivery::test_send::{send_test, test_event};
use herald_domain::{Attempt, Endpoint};
use herald_store::{Store, StoreError};

/// Sends test events through the shared delivery client and records them in the store.
pub struct DeliveryTestSender {
    /// Where the attempt is recorded.
    pub store: Arc<dyn Store>,
    /// The one outbound client.
    pub client: DeliveryClient,
}

#[async_trait]
impl TestSender for DeliveryTestSender {
    async fn send_test(&self, endpoint: &Endpoint) -> Result<Attempt, StoreError> {
        let signing = self
            .store
            .get_signing_material(endpoint.org_id, endpoint.id)
            .await?;
        let credentials = self
            .store
            .get_endpoint_credentials(endpoint.org_id, endpoint.id)
            .await?;
        let event = test_event(endpoint);
        let attempt = send_test(&self.client, &event, endpoint, &signing, &credentials).await;
        self.store.record_test_attempt(&event, &attempt).await?;
        Ok(attempt)
    }
}
