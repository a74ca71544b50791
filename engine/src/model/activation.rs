//! Activation codes (product keys, SPEC section 12): a batch of codes made from one license
//! template, sold through resellers and shops; redeeming a code makes a license of the template
//! for the redeemer's licensee. A code is shown once, when its batch is made; only its digest is
//! kept.

use crate::ids::{ActivationBatchId, ConsumerId, LicenseId};
use crate::model::{Credit, LicenseModel};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The symbols of a code: Crockford's base 32 (no I, L, O or U, which read as other symbols).
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Symbols in a code: 100 random bits, so that codes cannot be guessed.
pub const CODE_SYMBOLS: usize = 20;

/// Symbols between dashes when a code is written out.
const GROUP_SYMBOLS: usize = 5;

/// The code `random` spells, written `XXXXX-XXXXX-XXXXX-XXXXX` (each byte gives one symbol: 256
/// is a multiple of 32, so every symbol is equally likely).
pub fn spell_code(random: &[u8; CODE_SYMBOLS]) -> String {
    let mut code = String::with_capacity(CODE_SYMBOLS + CODE_SYMBOLS / GROUP_SYMBOLS);
    for (i, byte) in random.iter().enumerate() {
        if i > 0 && i % GROUP_SYMBOLS == 0 {
            code.push('-');
        }
        code.push(char::from(ALPHABET[usize::from(byte & 31)]));
    }
    code
}

/// A code as typed (any case, with or without dashes and spaces, `O` for zero and `I` or `L`
/// for one, as people misread them) in its one canonical form, the one its digest is of; `None`
/// when it cannot be a code.
pub fn canonical_code(typed: &str) -> Option<String> {
    if typed.len() > 4 * CODE_SYMBOLS {
        return None;
    }
    let mut code = String::with_capacity(CODE_SYMBOLS);
    for c in typed.chars().filter(|c| *c != '-' && !c.is_whitespace()) {
        let symbol = match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        };
        if !symbol.is_ascii() || !ALPHABET.contains(&(symbol as u8)) {
            return None;
        }
        code.push(symbol);
    }
    (code.len() == CODE_SYMBOLS).then_some(code)
}

/// The license a batch's codes make: a license's terms without its licensee, which is the
/// redeemer's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseTemplate {
    /// The product's name.
    pub product: String,
    /// The tier; without one, every feature that is not display-only.
    pub tier: Option<String>,
    /// The credit; without one, the tier's `max_users` seats, enforced.
    pub credit: Option<Credit>,
    /// The rules.
    pub model: LicenseModel,
    /// How long a license lasts from its redemption; perpetual when absent (or `valid_until`).
    pub license_duration_s: Option<u64>,
    /// When every license of the batch ends, however late it was redeemed.
    pub valid_until: Option<Timestamp>,
}

impl LicenseTemplate {
    /// The end of a license redeemed at `at`: the earlier of the fixed end and the duration.
    pub fn valid_until(&self, at: Timestamp) -> Option<Timestamp> {
        let by_duration = self.license_duration_s.map(|s| at.plus_secs(s));
        match (by_duration, self.valid_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (one, other) => one.or(other),
        }
    }
}

/// A batch of activation codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationBatch {
    /// Its id.
    pub id: ActivationBatchId,
    /// The license each redemption makes.
    pub template: LicenseTemplate,
    /// How many times each code may be redeemed (by different consumers).
    pub uses_per_code: u32,
    /// After this no code of the batch can be redeemed.
    pub expires_at: Option<Timestamp>,
    /// When it was made.
    pub created_at: Timestamp,
    /// Its codes, in the order they were shown.
    pub codes: Vec<ActivationCode>,
}

impl ActivationBatch {
    /// Redemptions of all its codes.
    pub fn redeemed(&self) -> usize {
        self.codes.iter().map(|c| c.redemptions.len()).sum()
    }

    /// Codes that have no use left.
    pub fn used_up(&self) -> usize {
        self.codes.iter().filter(|c| c.redemptions.len() >= self.uses_per_code as usize).count()
    }
}

/// One code of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationCode {
    /// SHA-256 of the code in its canonical form ([`canonical_code`]); the code is never stored.
    pub code_sha256: [u8; 32],
    /// Who redeemed it, oldest first.
    pub redemptions: Vec<Redemption>,
}

/// A code redeemed by a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redemption {
    /// Who redeemed it.
    pub consumer: ConsumerId,
    /// The license it made.
    pub license: LicenseId,
    /// When.
    pub at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spelled_code_is_its_own_canonical_form_without_dashes() {
        let random: [u8; CODE_SYMBOLS] = std::array::from_fn(|i| (i * 37 + 5) as u8);
        let code = spell_code(&random);
        assert_eq!(code.len(), 23);
        assert_eq!(code.matches('-').count(), 3);
        assert_eq!(canonical_code(&code), Some(code.replace('-', "")));
    }

    #[test]
    fn typing_slips_are_forgiven_and_anything_else_is_no_code() {
        assert_eq!(canonical_code("abcde fghjk-mnpqr-stvwx").as_deref(), Some("ABCDEFGHJKMNPQRSTVWX"));
        assert_eq!(canonical_code("OOOOO-IIIII-LLLLL-00000").as_deref(), Some("00000111111111100000"));
        assert_eq!(canonical_code("UUUUU-00000-00000-00000"), None, "U is not a symbol");
        assert_eq!(canonical_code("00000-00000-00000-0000"), None, "too short");
        assert_eq!(canonical_code("00000-00000-00000-000000"), None, "too long");
        assert_eq!(canonical_code("00000-00000-00000-0000é"), None);
        assert_eq!(canonical_code(&"-".repeat(1_000)), None);
    }

    #[test]
    fn a_license_ends_at_the_earlier_of_its_duration_and_the_fixed_end() {
        let template = |duration: Option<u64>, until: Option<i64>| LicenseTemplate {
            product: "p".into(),
            tier: None,
            credit: None,
            model: LicenseModel::default(),
            license_duration_s: duration,
            valid_until: until.map(Timestamp::from_millis),
        };
        let at = Timestamp::from_millis(1_000);
        assert_eq!(template(None, None).valid_until(at), None);
        assert_eq!(template(Some(10), None).valid_until(at), Some(Timestamp::from_millis(11_000)));
        assert_eq!(template(Some(10), Some(5_000)).valid_until(at), Some(Timestamp::from_millis(5_000)));
        assert_eq!(template(Some(1), Some(5_000)).valid_until(at), Some(Timestamp::from_millis(2_000)));
        assert_eq!(template(None, Some(5_000)).valid_until(at), Some(Timestamp::from_millis(5_000)));
    }
}
