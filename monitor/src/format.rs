//! How numbers are shown: durations, byte counts, rates.

/// A duration in whole seconds, in its two largest units: `42s`, `3m 05s`, `2h 07m`, `4d 01h`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match secs {
        0..60 => format!("{s}s"),
        60..3600 => format!("{m}m {s:02}s"),
        3600..86_400 => format!("{h}h {m:02}m"),
        _ => format!("{d}d {h:02}h"),
    }
}

/// How long ago `timestamp` (unix seconds) was at `now`; a timestamp in the future is `0s`.
pub fn age(now: u64, timestamp: u64) -> String {
    duration(now.saturating_sub(timestamp))
}

/// A byte count in binary units: `512 B`, `1.5 KiB`, `20.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    // Round first, so 1048575 bytes are `1.0 MiB`, not `1024.0 KiB`.
    while (value * 10.0).round() / 10.0 >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Bytes per second.
pub fn rate(bytes_per_second: u64) -> String {
    format!("{}/s", bytes(bytes_per_second))
}

/// `1 client`, `2 clients`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_show_their_two_largest_units() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(60), "1m 00s");
        assert_eq!(duration(3599), "59m 59s");
        assert_eq!(duration(3600), "1h 00m");
        assert_eq!(duration(86_399), "23h 59m");
        assert_eq!(duration(86_400), "1d 00h");
        assert_eq!(duration(400 * 86_400 + 5 * 3600 + 7), "400d 05h");
    }

    #[test]
    fn ages_never_go_negative() {
        assert_eq!(age(1000, 900), "1m 40s");
        assert_eq!(age(1000, 1000), "0s");
        assert_eq!(age(1000, 2000), "0s");
    }

    #[test]
    fn bytes_use_binary_units_with_one_decimal() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(bytes(20 * 1024 * 1024), "20.0 MiB");
        assert_eq!(bytes(3 * (1 << 30) + (1 << 29)), "3.5 GiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
        assert_eq!(rate(2048), "2.0 KiB/s");
        assert_eq!(rate(0), "0 B/s");
    }

    #[test]
    fn counts_pick_singular_or_plural() {
        assert_eq!(count(1, "tunnel", "tunnels"), "1 tunnel");
        assert_eq!(count(0, "tunnel", "tunnels"), "0 tunnels");
    }
}
