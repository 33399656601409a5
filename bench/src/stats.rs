//! Statistics and units: percentiles, medians, ratios, rates, and how they are printed.
//!
//! Conventions used everywhere in the bench (and stated in its output):
//! * percentiles are **nearest-rank**: p99 of 1000 samples is the 990th smallest, a value that was
//!   actually observed; no interpolation;
//! * MB is 10^6 bytes (MB/s as network tools print it); sizes of memory and payloads are binary
//!   (KiB, MiB);
//! * a ratio is always `broker / baseline`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Nearest-rank percentile of `sorted` (ascending): the smallest sample with at least `p` percent
/// of all samples at or below it. `p` is clamped to 0..=100; p0 is the minimum. `None` without
/// samples.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    // The epsilon keeps 99.9% of 1000 at rank 999 despite 99.9/100 not being exact in binary.
    let rank = (p / 100.0 * sorted.len() as f64 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Median of unsorted values (the mean of the two middle ones for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) { (sorted[mid - 1] + sorted[mid]) / 2.0 } else { sorted[mid] })
}

/// `numerator / denominator`, or `None` when that is not a number worth printing.
pub fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    let value = numerator / denominator;
    (denominator > 0.0 && value.is_finite()).then_some(value)
}

/// Payload rate in MB/s (10^6 bytes per second).
pub fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 { 0.0 } else { bytes as f64 / 1e6 / seconds }
}

/// The usual summary of a latency distribution, in one unit (the field name says which).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Number of samples.
    pub count: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Smallest sample.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

impl Percentiles {
    /// Summarises durations in units of `unit` (e.g. `Duration::from_micros(1)` for µs).
    /// Also returns the sorted values, for a CDF.
    pub fn of_durations(samples: &[Duration], unit: Duration) -> (Percentiles, Vec<f64>) {
        let scale = unit.as_secs_f64();
        let mut sorted: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() / scale).collect();
        sorted.sort_by(f64::total_cmp);
        (Self::of_sorted(&sorted), sorted)
    }

    /// Summarises sorted values; all zeros without samples.
    pub fn of_sorted(sorted: &[f64]) -> Percentiles {
        if sorted.is_empty() {
            return Percentiles::default();
        }
        let at = |p| percentile(sorted, p).unwrap_or(0.0);
        Percentiles {
            count: sorted.len(),
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            min: sorted[0],
            p50: at(50.0),
            p90: at(90.0),
            p99: at(99.0),
            p999: at(99.9),
            max: sorted[sorted.len() - 1],
        }
    }
}

/// The distribution as 101 points: the value at each whole percentile 0..=100 (nearest rank).
/// Small enough to keep in the JSON results, enough to draw the chart from.
pub fn cdf_points(sorted: &[f64]) -> Vec<f64> {
    if sorted.is_empty() {
        return Vec::new();
    }
    (0..=100).map(|p| percentile(sorted, f64::from(p)).unwrap_or(0.0)).collect()
}

/// `812 MB/s`, `95.3 MB/s`, `4.21 MB/s`: three significant digits or more.
pub fn format_rate(mb_per_s: f64) -> String {
    format!("{} MB/s", three_digits(mb_per_s))
}

/// A number with at least three significant digits and no more decimals than that needs.
pub fn three_digits(value: f64) -> String {
    let magnitude = value.abs();
    if !value.is_finite() {
        "n/a".to_string()
    } else if magnitude >= 100.0 || magnitude == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// Bytes in binary units: `512 B`, `23.4 KiB`, `1.50 MiB`, `2.00 GiB`. Negative values (memory
/// that shrank) keep their sign.
pub fn format_bytes(bytes: f64) -> String {
    let sign = if bytes < 0.0 { "-" } else { "" };
    let b = bytes.abs();
    const KIB: f64 = 1024.0;
    if b < KIB {
        format!("{sign}{b:.0} B")
    } else if b < KIB * KIB {
        format!("{sign}{} KiB", three_digits(b / KIB))
    } else if b < KIB * KIB * KIB {
        format!("{sign}{} MiB", three_digits(b / KIB / KIB))
    } else {
        format!("{sign}{} GiB", three_digits(b / KIB / KIB / KIB))
    }
}

/// `0.83` style ratio, or `n/a`.
pub fn format_ratio(ratio: Option<f64>) -> String {
    match ratio {
        Some(r) => format!("{r:.2}"),
        None => "n/a".to_string(),
    }
}

/// Parses a size: plain bytes or with a unit, `256MiB`, `64KiB`, `1M` (binary units for `K`, `M`,
/// `G` too: payload sizes are binary here), `10MB` (decimal).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '_').unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.replace('_', "").parse().map_err(|_| format!("not a size: {text:?}"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {text:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    number.checked_mul(factor).ok_or_else(|| format!("size too large: {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_to(n: usize) -> Vec<f64> {
        (1..=n).map(|v| v as f64).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values = one_to(1000);
        assert_eq!(percentile(&values, 50.0), Some(500.0));
        assert_eq!(percentile(&values, 99.0), Some(990.0));
        assert_eq!(percentile(&values, 99.9), Some(999.0));
        assert_eq!(percentile(&values, 100.0), Some(1000.0));
        assert_eq!(percentile(&values, 0.0), Some(1.0), "p0 is the minimum");
        let small = one_to(10);
        assert_eq!(percentile(&small, 50.0), Some(5.0));
        assert_eq!(percentile(&small, 99.0), Some(10.0), "with 10 samples p99 is the maximum");
        assert_eq!(percentile(&small, 91.0), Some(10.0));
        assert_eq!(percentile(&small, 90.0), Some(9.0));
        assert_eq!(percentile(&[7.0], 99.9), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&small, 150.0), Some(10.0), "clamped");
    }

    #[test]
    fn summary_of_durations() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let (summary, sorted) = Percentiles::of_durations(&samples, Duration::from_micros(1));
        assert_eq!(sorted.first(), Some(&1.0));
        assert_eq!(summary.count, 100);
        assert!((summary.mean - 50.5).abs() < 1e-9);
        assert!((summary.p50 - 50.0).abs() < 1e-9);
        assert!((summary.p99 - 99.0).abs() < 1e-9);
        assert!((summary.p999 - 100.0).abs() < 1e-9);
        assert!((summary.max - 100.0).abs() < 1e-9);
        let (ms, _) = Percentiles::of_durations(&[Duration::from_micros(2500)], Duration::from_millis(1));
        assert!((ms.p50 - 2.5).abs() < 1e-9);
        assert_eq!(Percentiles::of_sorted(&[]), Percentiles::default());
    }

    #[test]
    fn cdf_has_101_points_from_min_to_max() {
        let cdf = cdf_points(&one_to(200));
        assert_eq!(cdf.len(), 101);
        assert_eq!(cdf[0], 1.0);
        assert_eq!(cdf[50], 100.0);
        assert_eq!(cdf[100], 200.0);
        assert!(cdf.windows(2).all(|w| w[0] <= w[1]));
        assert!(cdf_points(&[]).is_empty());
    }

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
        assert_eq!(ratio(1.0, 2.0), Some(0.5));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(format_ratio(Some(0.8349)), "0.83");
        assert_eq!(format_ratio(None), "n/a");
    }

    #[test]
    fn rates_in_decimal_megabytes() {
        assert_eq!(mb_per_s(256 << 20, Duration::from_secs(1)), 268.435456);
        assert_eq!(mb_per_s(1_000_000, Duration::from_millis(500)), 2.0);
        assert_eq!(mb_per_s(5, Duration::ZERO), 0.0);
        assert_eq!(format_rate(812.34), "812 MB/s");
        assert_eq!(format_rate(1234.4), "1234 MB/s");
        assert_eq!(format_rate(95.34), "95.3 MB/s");
        assert_eq!(format_rate(4.214), "4.21 MB/s");
        assert_eq!(format_rate(0.5), "0.500 MB/s");
        assert_eq!(format_rate(0.0), "0 MB/s");
        assert_eq!(three_digits(f64::NAN), "n/a");
    }

    #[test]
    fn bytes_in_binary_units() {
        assert_eq!(format_bytes(512.0), "512 B");
        assert_eq!(format_bytes(24.0 * 1024.0), "24.0 KiB");
        assert_eq!(format_bytes(137_000.0), "134 KiB");
        assert_eq!(format_bytes(1.5 * 1024.0 * 1024.0), "1.50 MiB");
        assert_eq!(format_bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3.00 GiB");
        assert_eq!(format_bytes(-2048.0), "-2.00 KiB");
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("1 M"), Ok(1 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1_000"), Ok(1000));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }
}
