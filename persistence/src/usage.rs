//! Usage reports on sled. The writer copies each closed usage record to the usage-records tree
//! with its log record; [`merge`] folds the durable ones into the usage tree's cells, with the
//! sequence number merged up to in the same sled batch (a crash midway merges again from the
//! last batch, never twice), then removes them; a report reads one key range of cells.

use crate::error::PersistenceError;
use crate::format::{
    decode_usage_cell, decode_usage_record, encode_usage_cell, key_seq, seq_key, usage_cell_key, usage_cell_key_of,
    usage_period_prefix, USAGE_CURSOR_KEY,
};
use crate::snapshot::Stores;
use leasehold_engine::time::Timestamp;
use leasehold_engine::usage::{self, CellKey, Granularity, UsageCell, UsageQuery, UsageRow, KEEP_DAYS};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Closed records folded per sled batch: bounds the memory of one merge step.
const RECORDS_PER_BATCH: usize = 10_000;

/// One merge at a time: two would read the same cursor and add the same records twice.
static MERGING: Mutex<()> = Mutex::new(());

/// The sequence number the usage tree has merged up to.
pub(crate) fn merged_upto(stores: &Stores) -> Result<u64, PersistenceError> {
    Ok(stores.usage.get(USAGE_CURSOR_KEY)?.map_or(Ok(0), |v| key_seq(&v))?)
}

/// Folds the closed records up to `durable` into the cells, removes them, and drops the cells
/// older than [`KEEP_DAYS`] before `now`.
pub(crate) fn merge(stores: &Stores, durable: u64, now: Timestamp) -> Result<(), PersistenceError> {
    let _one_at_a_time = MERGING.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let cursor = merged_upto(stores)?;
        // Records a crash left behind after their merge was written.
        for key in stores.usage_records.range(..=seq_key(cursor)).keys() {
            stores.usage_records.remove(key?)?;
        }
        if cursor >= durable {
            break;
        }
        let mut folded: BTreeMap<CellKey, UsageCell> = BTreeMap::new();
        let mut last = cursor;
        for item in stores.usage_records.range(seq_key(cursor + 1)..=seq_key(durable)).take(RECORDS_PER_BATCH) {
            let (key, value) = item?;
            let seq = key_seq(&key)?;
            usage::fold_record(&mut folded, &decode_usage_record(seq, &value)?);
            last = seq;
        }
        if last == cursor {
            // Nothing durable left to merge: the cursor moves on all the same.
            last = durable;
        }
        let mut batch = sled::Batch::default();
        for (key, mut cell) in folded {
            let stored_key = usage_cell_key(&key);
            if let Some(kept) = stores.usage.get(stored_key)? {
                let mut kept = decode_usage_cell(&stored_key, &kept)?;
                kept.counts.add_later(&cell.counts);
                cell.counts = kept.counts;
            }
            batch.insert(&stored_key[..], encode_usage_cell(&stored_key, &cell)?);
        }
        batch.insert(USAGE_CURSOR_KEY, &seq_key(last)[..]);
        stores.usage.apply_batch(batch)?;
    }
    prune(stores, now)
}

/// Drops the cells of periods that ended more than [`KEEP_DAYS`] before `now`.
fn prune(stores: &Stores, now: Timestamp) -> Result<(), PersistenceError> {
    let oldest_kept = Timestamp::from_millis(now.as_millis() - (KEEP_DAYS as i64) * 86_400_000);
    for granularity in Granularity::ALL {
        let start = usage_period_prefix(granularity, Timestamp::from_millis(i64::MIN));
        let end = usage_period_prefix(granularity, granularity.period_of(oldest_kept));
        for key in stores.usage.range(start..end).keys() {
            stores.usage.remove(key?)?;
        }
    }
    Ok(())
}

/// The rows of `query` from the cells (merged first).
pub(crate) fn report(
    stores: &Stores,
    durable: u64,
    now: Timestamp,
    query: &UsageQuery,
) -> Result<Vec<UsageRow>, PersistenceError> {
    merge(stores, durable, now)?;
    let start = usage_period_prefix(query.granularity, query.first_period());
    let end = usage_period_prefix(query.granularity, query.to);
    let mut cells = Vec::new();
    for item in stores.usage.range(start..end) {
        let (key, value) = item?;
        let cell_key = usage_cell_key_of(&key)?;
        let cell = decode_usage_cell(&key, &value)?;
        if query.wants(&cell_key, &cell) {
            cells.push((cell_key, cell));
        }
    }
    Ok(usage::report(query, cells.iter().map(|(key, cell)| (*key, cell))))
}
