//! Geolocation (SPEC section 13): the country of a client's address, from a MaxMind DB file
//! (GeoIP2 or GeoLite2 Country or City, or any database whose records carry
//! `country.iso_code`), for the `geo` rules of license models. The engine asks it for every
//! checkout from a known address ([`leasehold_engine::engine::Geolocation`]); a lookup is a walk
//! of the file's search tree in memory.

use leasehold_engine::engine::Geolocation;
use std::net::IpAddr;
use std::path::Path;

/// A MaxMind database, read whole into memory.
pub struct GeoIpDatabase {
    reader: maxminddb::Reader<Vec<u8>>,
}

/// Why a database could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GeoIpError(String);

impl GeoIpDatabase {
    /// Opens `path`, refusing a file that is no MaxMind database.
    pub fn open(path: &Path) -> Result<GeoIpDatabase, GeoIpError> {
        let reader = maxminddb::Reader::open_readfile(path)
            .map_err(|e| GeoIpError(format!("{}: not a MaxMind database ({e})", path.display())))?;
        Ok(GeoIpDatabase { reader })
    }

    /// The database's type as it names itself (`GeoLite2-Country`, ...).
    pub fn kind(&self) -> &str {
        &self.reader.metadata.database_type
    }
}

impl Geolocation for GeoIpDatabase {
    fn country(&self, ip: IpAddr) -> Option<String> {
        let found: maxminddb::geoip2::Country<'_> = self.reader.lookup(ip).ok()?;
        let code = found.country?.iso_code?;
        Some(code.to_ascii_uppercase())
    }
}
