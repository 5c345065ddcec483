//! Value parsers for command-line amounts, so that a bad number is refused by clap at
//! once, in plain words, instead of failing later in a serializer or on the master.

/// A finite number (`--cpus 0.5` for `wasmos run`, whose jobs framework checks the
/// range and names the field it refuses, as it does for the HTTP API).
pub fn finite_amount(s: &str) -> Result<f64, String> {
    let value: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if !value.is_finite() {
        return Err(format!("{s:?} is not a finite number"));
    }
    Ok(value)
}

/// A finite amount greater than zero (`--cpus 0.5`, `--timeout 2`, `--weight 2`).
pub fn positive_amount(s: &str) -> Result<f64, String> {
    let value = finite_amount(s)?;
    if value <= 0.0 {
        return Err(format!("{s:?} must be greater than 0"));
    }
    Ok(value)
}

/// A duration with its unit (`90s`, `5m`, `1h 30m`, `500ms`), in milliseconds.
pub fn duration_ms(s: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration such as 90s, 5m or 1h: {e}"))?;
    u64::try_from(d.as_millis()).map_err(|_| format!("{s:?} is too long"))
}

/// `ROLE=WEIGHT`, the weight a [`positive_amount`] (`--role-weight analytics=2`).
pub fn role_weight(s: &str) -> Result<(String, f64), String> {
    let Some((role, weight)) = s.split_once('=') else {
        return Err(format!("{s:?} is not ROLE=WEIGHT, e.g. analytics=2"));
    };
    let role = role.trim();
    if role.is_empty() {
        return Err(format!(
            "{s:?} names no role; write ROLE=WEIGHT, e.g. analytics=2"
        ));
    }
    Ok((role.to_owned(), positive_amount(weight)?))
}

/// An endpoint to connect to (`--connect tcp/10.0.0.5:7447`), its form checked.
pub fn connect_endpoint(s: &str) -> Result<String, String> {
    net::check_endpoint(s, net::EndpointUse::Connect).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

/// An endpoint to listen on (`--listen tcp/0.0.0.0:7447`; port 0 picks a free one).
pub fn listen_endpoint(s: &str) -> Result<String, String> {
    net::check_endpoint(s, net::EndpointUse::Listen).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_must_be_finite() {
        assert_eq!(finite_amount("0"), Ok(0.0));
        for bad in ["NaN", "inf", "-inf", "1e400", "", "x"] {
            assert!(finite_amount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn amounts_must_be_finite_and_positive() {
        assert_eq!(positive_amount("0.5"), Ok(0.5));
        for bad in [
            "NaN", "nan", "inf", "-inf", "infinity", "0", "-1", "", "x", "1e400",
        ] {
            let err = positive_amount(bad).expect_err(bad);
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn role_weights_are_role_equals_weight() {
        assert_eq!(
            role_weight("analytics=2"),
            Ok(("analytics".to_owned(), 2.0))
        );
        assert!(role_weight("analytics").is_err());
        assert!(role_weight("=2").is_err());
        assert!(role_weight("a=NaN").is_err());
        assert!(role_weight("a=0").is_err());
    }
}
