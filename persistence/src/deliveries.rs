//! Where each webhook's deliveries stand ([`DeliveryLog`]), in two trees of the journal's
//! database beside the log: `webhook_cursors` (webhook id → the last event it is done with, u64
//! big-endian) and `deliveries` (webhook id and event id, big-endian, → the delivery as JSON).
//!
//! Written without waiting for the disk: the journal's next flush makes them durable, and
//! [`DeliveryLog::sync`] does when nothing else flushes. A crash loses at most the newest
//! progress, and those events are sent again (deliveries are at least once).

use crate::format::seq_key;
use crate::journal::SledJournal;
use leasehold_engine::ids::WebhookId;
use leasehold_engine::journal::JournalError;
use leasehold_engine::webhooks::{Delivery, DeliveryLog};

fn delivery_key(webhook: WebhookId, event_id: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(webhook.0.as_bytes());
    key[16..].copy_from_slice(&seq_key(event_id));
    key
}

fn io(what: &str) -> impl Fn(sled::Error) -> JournalError + '_ {
    move |e| JournalError::Io(format!("{what}: {e}"))
}

fn decode(value: &[u8]) -> Result<Delivery, JournalError> {
    serde_json::from_slice(value).map_err(|e| JournalError::Io(format!("reading a delivery: {e}")))
}

impl DeliveryLog for SledJournal {
    fn cursor(&self, webhook: WebhookId) -> Result<Option<u64>, JournalError> {
        let value =
            self.stores()?.webhook_cursors.get(webhook.0.as_bytes()).map_err(io("reading a webhook's cursor"))?;
        Ok(value.and_then(|v| <[u8; 8]>::try_from(&v[..]).ok()).map(u64::from_be_bytes))
    }

    fn advance(&self, webhook: WebhookId, event_id: u64) -> Result<(), JournalError> {
        let cursors = self.stores()?.webhook_cursors;
        cursors.insert(webhook.0.as_bytes(), &event_id.to_be_bytes()).map_err(io("writing a webhook's cursor"))?;
        Ok(())
    }

    fn record(&self, webhook: WebhookId, delivery: &Delivery) -> Result<(), JournalError> {
        let value = serde_json::to_vec(delivery).map_err(|e| JournalError::Io(format!("encoding a delivery: {e}")))?;
        let deliveries = self.stores()?.deliveries;
        deliveries.insert(delivery_key(webhook, delivery.event_id), value).map_err(io("writing a delivery"))?;
        Ok(())
    }

    fn delivery(&self, webhook: WebhookId, event_id: u64) -> Result<Option<Delivery>, JournalError> {
        let value = self.stores()?.deliveries.get(delivery_key(webhook, event_id)).map_err(io("reading a delivery"))?;
        value.map(|v| decode(&v)).transpose()
    }

    fn deliveries(&self, webhook: WebhookId, before: Option<u64>, limit: usize) -> Result<Vec<Delivery>, JournalError> {
        let range = delivery_key(webhook, 0)..delivery_key(webhook, before.unwrap_or(u64::MAX));
        let deliveries = self.stores()?.deliveries;
        let mut found = Vec::new();
        for item in deliveries.range(range).values().rev().take(limit) {
            found.push(decode(&item.map_err(io("reading deliveries"))?)?);
        }
        Ok(found)
    }

    fn forget_before(&self, webhook: WebhookId, event_id: u64) -> Result<(), JournalError> {
        let deliveries = self.stores()?.deliveries;
        for key in deliveries.range(delivery_key(webhook, 0)..delivery_key(webhook, event_id)).keys() {
            deliveries.remove(key.map_err(io("reading deliveries"))?).map_err(io("forgetting a delivery"))?;
        }
        Ok(())
    }

    fn forget(&self, webhook: WebhookId) -> Result<(), JournalError> {
        let stores = self.stores()?;
        stores.webhook_cursors.remove(webhook.0.as_bytes()).map_err(io("forgetting a webhook's cursor"))?;
        for key in stores.deliveries.scan_prefix(webhook.0.as_bytes()).keys() {
            stores.deliveries.remove(key.map_err(io("reading deliveries"))?).map_err(io("forgetting a delivery"))?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), JournalError> {
        self.stores()?.db.flush().map_err(io("flushing deliveries"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JournalConfig;
    use uuid::Uuid;

    #[test]
    fn deliveries_and_cursors_survive_a_reopen_and_stay_apart_per_webhook() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (WebhookId(Uuid::from_u128(1)), WebhookId(Uuid::from_u128(2)));
        {
            let (journal, _) = SledJournal::open(dir.path(), JournalConfig::default()).unwrap();
            for id in [7, 300, 70_000] {
                journal.record(a, &Delivery::new(id)).unwrap();
            }
            journal.record(b, &Delivery::new(8)).unwrap();
            journal.advance(a, 300).unwrap();
            journal.sync().unwrap();
        }
        let (journal, _) = SledJournal::open(dir.path(), JournalConfig::default()).unwrap();
        let ids = |v: Vec<Delivery>| v.iter().map(|d| d.event_id).collect::<Vec<_>>();
        assert_eq!(journal.cursor(a).unwrap(), Some(300));
        assert_eq!(journal.cursor(b).unwrap(), None);
        assert_eq!(ids(journal.deliveries(a, None, 10).unwrap()), [70_000, 300, 7]);
        assert_eq!(ids(journal.deliveries(a, Some(70_000), 1).unwrap()), [300]);
        assert_eq!(journal.delivery(b, 8).unwrap(), Some(Delivery::new(8)));
        journal.forget_before(a, 300).unwrap();
        assert_eq!(ids(journal.deliveries(a, None, 10).unwrap()), [70_000, 300]);
        journal.forget(a).unwrap();
        assert_eq!((journal.cursor(a).unwrap(), journal.deliveries(a, None, 10).unwrap().len()), (None, 0));
        assert_eq!(ids(journal.deliveries(b, None, 10).unwrap()), [8]);
    }
}
