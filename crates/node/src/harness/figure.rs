//! What `m2msec bench` measures, one figure at a time, for every protocol: a value, and where
//! it compares, the baseline measured in the same run and the ratio.

use serde::Serialize;

/// One measured figure: a JSON line of `m2msec bench --json`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Figure {
    /// What is measured.
    pub name: String,
    /// Its unit.
    pub unit: &'static str,
    /// The measurement.
    pub value: f64,
    /// What it compares against, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// `value / baseline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
}

impl Figure {
    /// A figure without a baseline.
    #[must_use]
    pub fn plain(name: String, unit: &'static str, value: f64) -> Self {
        Self {
            name,
            unit,
            value,
            baseline: None,
            ratio: None,
        }
    }

    /// A figure compared with `baseline` (the ratio is absent when the baseline is zero).
    #[must_use]
    pub fn against(name: String, unit: &'static str, value: f64, baseline: f64) -> Self {
        let ratio = if baseline == 0.0 {
            None
        } else {
            Some(value / baseline)
        };
        Self {
            name,
            unit,
            value,
            baseline: Some(baseline),
            ratio,
        }
    }
}
