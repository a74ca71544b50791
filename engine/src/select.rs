//! Which of a consumer's licenses to try first (SPEC section 3): seat licenses before credit
//! licenses; among seat licenses the one that lasts longest, so short ones are not used up
//! needlessly; among use-count and use-time licenses the one that ends first, so credit that
//! would expire is spent before credit that keeps.

use crate::model::{Dimension, License};
use std::cmp::Ordering;

/// The order in which to try two licenses (`Less`: try `a` first).
pub fn preference(a: &License, b: &License) -> Ordering {
    let is_seats = |l: &License| l.credit.dimension == Dimension::Seats;
    // `None` (perpetual) ends last.
    let end = |l: &License| l.valid_until.map_or(i64::MAX, |t| t.as_millis());
    match (is_seats(a), is_seats(b)) {
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (true, true) => end(b).cmp(&end(a)),
        (false, false) => end(a).cmp(&end(b)),
    }
    .then_with(|| a.id.cmp(&b.id))
}
