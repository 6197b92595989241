//! `LastModifiedTime` as Collabora needs it: written with exactly six fractional digits and
//! compared to the microsecond.
//!
//! Collabora keeps the `LastModifiedTime` of CheckFileInfo (then of each PutFile answer) and
//! sends it back on the next PutFile as `X-COOL-WOPI-Timestamp`, with six digits. Releases up to
//! about 2020 read the fraction as a whole number of microseconds whatever its length (`.3331911`
//! became 3.331911 s); newer ones scale it, then drop what is below a microsecond. Six digits
//! come back as the same instant from both, and a comparison at the microsecond matches them.

use chrono::{DateTime, Utc};

/// UTC, ISO 8601, exactly six fractional digits (digits below the microsecond are dropped).
pub fn wopi_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A client's echo of a `LastModifiedTime`: ISO 8601 with an offset, any number of digits.
pub fn parse(stamp: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(stamp.trim()).ok().map(|t| t.with_timezone(&Utc))
}

/// Whether two times are the same at the precision we write: the microsecond.
pub fn same_instant(a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
    a.timestamp_micros() == b.timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, NaiveDateTime, TimeZone};
    use rand::Rng;

    /// Collabora's newer parser: the fraction scaled by its number of digits; the time kept
    /// to the microsecond.
    fn scaled(stamp: &str) -> DateTime<Utc> {
        let (base, fraction) = split(stamp);
        let nanos = format!("{fraction:0<9}")[..9].parse::<i64>().unwrap();
        base + Duration::microseconds(nanos / 1000)
    }

    /// Releases up to about 2020: the digits, whatever their count, as microseconds.
    fn whole_micros(stamp: &str) -> DateTime<Utc> {
        let (base, fraction) = split(stamp);
        base + Duration::microseconds(fraction.parse::<i64>().unwrap())
    }

    fn split(stamp: &str) -> (DateTime<Utc>, &str) {
        let (base, fraction) = stamp.strip_suffix('Z').unwrap().split_once('.').unwrap();
        (Utc.from_utc_datetime(&NaiveDateTime::parse_from_str(base, "%Y-%m-%dT%H:%M:%S").unwrap()), fraction)
    }

    /// What Collabora sends back: the parsed time, written with six digits.
    fn echo(parser: fn(&str) -> DateTime<Utc>, last_modified: &str) -> String {
        parser(last_modified).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }

    fn random_times(n: usize) -> Vec<DateTime<Utc>> {
        let mut rng = rand::thread_rng();
        // 2000 … 2100, to the nanosecond (file systems keep ns); whole seconds and whole
        // microseconds too.
        let mut times: Vec<_> = (0..n)
            .map(|_| Utc.timestamp_opt(rng.gen_range(946_684_800..4_102_444_800), rng.gen_range(0..1_000_000_000)).unwrap())
            .collect();
        times.push(Utc.timestamp_opt(1_796_151_600, 0).unwrap());
        times.push(Utc.timestamp_opt(1_796_151_600, 999_999_999).unwrap());
        times.push(Utc.timestamp_opt(1_796_151_600, 1_000).unwrap());
        times
    }

    #[test]
    fn six_digits_round_trip_through_both_collabora_parsers() {
        for stored in random_times(20_000) {
            let written = wopi_time(stored);
            assert_eq!(written.len(), 27, "{written}");
            for parser in [scaled as fn(&str) -> DateTime<Utc>, whole_micros] {
                let echoed = echo(parser, &written);
                assert_eq!(echoed, written, "the echo is what we wrote");
                let claimed = parse(&echoed).unwrap();
                assert!(same_instant(claimed, stored), "{written} came back as {echoed}");
            }
        }
    }

    #[test]
    fn seven_digits_did_not_round_trip() {
        // The old format, to show the models catch what Collabora did with it.
        let stored = Utc.timestamp_opt(1_796_154_233, 333_191_100).unwrap();
        let seven = format!("{}.{:07}Z", stored.format("%Y-%m-%dT%H:%M:%S"), stored.timestamp_subsec_nanos() / 100);
        assert_eq!(seven, "2026-12-01T19:43:53.3331911Z");
        assert_eq!(echo(whole_micros, &seven), "2026-12-01T19:43:56.331911Z");
        assert_eq!(echo(scaled, &seven), "2026-12-01T19:43:53.333191Z");
        assert!(same_instant(parse(&echo(scaled, &seven)).unwrap(), stored), "to the µs, the newer parser's echo matches");
        assert!(!same_instant(parse(&echo(whole_micros, &seven)).unwrap(), stored));
    }

    #[test]
    fn different_microseconds_differ() {
        let t = Utc.timestamp_opt(1_796_151_600, 123_456_789).unwrap();
        assert!(same_instant(t, Utc.timestamp_opt(1_796_151_600, 123_456_000).unwrap()));
        assert!(!same_instant(t, t + Duration::microseconds(1)));
        assert!(!same_instant(t, t + Duration::seconds(1)));
        assert_eq!(parse(" 2026-12-01T19:00:00.000000+00:00 "), Some(Utc.timestamp_opt(1_796_151_600, 0).unwrap()));
        assert_eq!(parse("1970-01-01T00:00:00.000000Z"), Some(DateTime::UNIX_EPOCH));
        assert!(parse("yesterday").is_none());
    }
}
