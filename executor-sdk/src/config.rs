//! A module's `--config` file in the simplest format a `no_std` module can read without a
//! heap: `key = value` lines; blank lines and lines starting with `#` are ignored.

/// A parsed view of `key = value` lines over the config bytes.
#[derive(Clone, Copy, Debug)]
pub struct Config<'a> {
    text: &'a str,
}

impl<'a> Config<'a> {
    /// Fails (`Err(Malformed)`) when the bytes are not UTF-8 or a non-comment line has no `=`.
    pub fn parse(bytes: &'a [u8]) -> Result<Config<'a>, crate::Error> {
        let text = core::str::from_utf8(bytes).map_err(|_| crate::Error::Malformed)?;
        let config = Config { text };
        let bad_line = config.lines().any(|line| !line.contains('='));
        if bad_line {
            Err(crate::Error::Malformed)
        } else {
            Ok(config)
        }
    }

    fn lines(&self) -> impl Iterator<Item = &'a str> {
        self.text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
    }

    /// The value of the last `key = value` line for `key`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim())
            .last()
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.parse().ok()
    }

    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key)?.parse().ok()
    }

    /// A non-negative amount in whole units (`0.5`) as thousandths, as proto's scalars.
    pub fn get_millis(&self, key: &str) -> Option<u64> {
        let units = self.get_f64(key)?;
        let ok = (0.0..1e15).contains(&units);
        // Round half away from zero, as proto's `Scalar::from_units` (f64::round is not in core).
        ok.then_some((units * 1000.0 + 0.5) as u64)
    }
}
